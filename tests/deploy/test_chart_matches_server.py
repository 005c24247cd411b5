"""What the chart renders agrees with what the server reads: its settings are loaded here
from the rendered ConfigMap, Secrets and env (nexus.config.load_settings, as `nexus serve`
does), and the pod's ports, probes, mounts and drain timing are checked against them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus.config import Settings, load_settings
from nexus.extensions.ai.config import parse_providers

from .chart import CHART, Helm, one, workload
from .dockerfile import parse
from .pod import POD_NAME, Pod, materialize, stand_in
from .settings_schema import config_schema
from .value_sets import ALL, CLUSTER, STANDALONE

# The first test of a fresh machine fetches helm and the validators with npm.
pytestmark = pytest.mark.timeout(600)


IMAGE_ENV = parse().stage("runtime").env()


def _pod(helm: Helm, name: str, tmp_path: Path) -> tuple[list[dict[str, Any]], Pod]:
    docs = helm.template(ALL[name])
    return docs, materialize(docs, IMAGE_ENV, tmp_path)


def _settings(pod: Pod) -> Settings:
    return load_settings(environ=pod.env)


def test_the_schema_lists_every_setting_the_user_may_set() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["config"] == config_schema(), (
        "helm/nexus/values.schema.json is out of date with nexus.config.Settings: "
        "run PYTHONPATH=src python tests/deploy/settings_schema.py"
    )


@pytest.mark.parametrize("name", STANDALONE)
def test_ports_and_probes_are_the_servers(helm: Helm, name: str, tmp_path: Path) -> None:
    docs, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    assert pod.ports == {"ws": s.port, "http": s.http_port}
    assert s.host == s.http_host == "0.0.0.0"
    # liveness on the WebSocket listener's /healthz (the loop answers, nothing else asked);
    # startup and readiness on the HTTP port, where /readyz reports draining and the checks
    probes = {k: pod.container[k]["httpGet"] for k in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = pod.container["readinessProbe"]["httpGet"]
    assert probes == {
        "startupProbe": {"path": "/healthz", "port": "http"},
        "livenessProbe": {"path": "/healthz", "port": "ws"},
        "readinessProbe": {"path": "/readyz", "port": "http"},
    }
    ws_svc, http_svc = one(docs, "Service", "-ws"), one(docs, "Service", "-http")
    assert ws_svc["spec"]["ports"][0]["targetPort"] == "ws"
    assert http_svc["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("name", STANDALONE)
def test_data_dir_is_the_writable_volume(helm: Helm, name: str, tmp_path: Path) -> None:
    _, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    data = pod.unroot(Path(s.data_dir))
    assert data == IMAGE_ENV["NEXUS_DATA_DIR"]  # the image's VOLUME
    volume = pod.mounts[data]
    persistent = ALL[name].get("persistence", {}).get("enabled", True)
    assert ("persistentVolumeClaim" in volume) == persistent
    assert ("emptyDir" in volume) == (not persistent)
    mount = next(m for m in pod.container["volumeMounts"] if m["mountPath"] == data)
    assert not mount.get("readOnly")


@pytest.mark.parametrize("name", STANDALONE)
def test_the_key_files_come_from_secrets(helm: Helm, name: str, tmp_path: Path) -> None:
    _, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    kind = ALL[name].get("auth", {}).get("type", "hmac")
    held = {
        "hmac": s.auth_secret_file,
        "publicKey": s.auth_public_key_file,
        "jwks": s.auth_jwks_file,
    }
    assert [k for k, v in held.items() if v] == [kind]
    path = Path(str(held[kind]))
    mount = pod.unroot(path).rsplit("/auth/", 1)[0]
    assert "projected" in pod.mounts[mount]  # a Secret, read-only
    assert s.auth_secret is None and not s.print_dev_token
    values = ALL[name]
    if values.get("auth", {}).get("hmacSecret"):
        assert path.read_text() == values["auth"]["hmacSecret"]
    if values.get("auth", {}).get("existingSecret"):
        assert path.read_text().startswith("existing-" + values["auth"]["existingSecret"])
    token = values.get("metricsToken", {})
    if token.get("value"):
        assert s.metrics_token == token["value"]
    elif token.get("existingSecret"):
        assert s.metrics_token == stand_in(token["existingSecret"], "metrics-token")
    else:
        assert s.metrics_token is None


def test_provider_keys_reach_the_server(helm: Helm, tmp_path: Path) -> None:
    _, pod = _pod(helm, "standalone-everything", tmp_path)
    s = _settings(pod)
    providers = parse_providers(s.ai_providers, pod.env)
    assert providers["openai"].api_key == "sk-test"
    assert providers["openai"].model == "gpt-4o-mini"
    claude = providers["claude"]
    assert claude.api_key == stand_in("ai-keys", "anthropic")
    assert (claude.retries, claude.total_timeout, claude.fallback) == (3, 120.0, "openai")
    assert claude.headers == {"X-Org": "o"}
    assert providers["local"].type == "offline" and providers["local"].api_key == ""
    assert "api_key_file" not in s.ai_providers["local"]


@pytest.mark.parametrize("name", STANDALONE)
def test_every_config_value_reaches_the_server(helm: Helm, name: str, tmp_path: Path) -> None:
    _, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    for key, value in ALL[name].get("config", {}).items():
        got = getattr(s, key)
        assert got == (tuple(value) if isinstance(value, list) else value), key
        assert type(got) is type(getattr(Settings(), key)), key


@pytest.mark.parametrize("name", STANDALONE)
def test_rollouts_leave_time_to_drain(helm: Helm, name: str, tmp_path: Path) -> None:
    _, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    grace = pod.spec["terminationGracePeriodSeconds"]
    assert grace >= s.drain_delay + s.shutdown_timeout
    if "terminationGracePeriodSeconds" not in ALL[name]:
        # the most the server's stop takes: the gateway's own stop timeout after the drain
        assert grace >= s.drain_delay + 2 * s.shutdown_timeout + 5
    command = pod.container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    signal_part, sleep_part = (part.strip() for part in command[2].split(";"))
    assert signal_part == "kill -USR1 1"  # PID 1 is tini, which forwards it to nexus
    words = shlex.split(sleep_part)
    assert words[0] == "sleep" and float(words[1]) == s.drain_delay


@pytest.mark.parametrize("name", CLUSTER)
def test_cluster_settings_are_the_servers(helm: Helm, name: str, tmp_path: Path) -> None:
    """Cluster mode renders settings the server loads as its JetStream engine's: the NATS
    URL and stream of the values, the pod's name as the node id, a private data dir."""
    _, pod = _pod(helm, name, tmp_path)
    s = _settings(pod)
    nats = {
        "url": "nats://nats:4222",
        "stream": "nexus",
        **ALL[name].get("cluster", {}).get("nats", {}),
    }
    assert s.cluster_engine == "nats"
    assert s.cluster_nats_url == nats["url"] and s.cluster_nats_stream == nats["stream"]
    assert s.cluster_node_id == POD_NAME
    if nats.get("credentialsSecret"):
        assert s.cluster_nats_credentials_file is not None
        assert Path(s.cluster_nats_credentials_file).is_file()


def test_no_service_links_to_collide_with_the_servers_variables(helm: Helm) -> None:
    """A release named "nexus" makes Services nexus-ws and nexus-http; with service links
    the kubelet would inject NEXUS_WS_PORT=tcp://..., which the server refuses."""
    docs = helm.run("template", "nexus", CHART, values={})
    names = [
        d["metadata"]["name"] for d in yaml.safe_load_all(docs) if d and d["kind"] == "Service"
    ]
    assert "nexus-ws" in names and "nexus-http" in names
    for values in ALL.values():
        pod = workload(helm.template(values))["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
