"""Render the Helm chart with the real helm binary and read the result as Python objects."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "nexus"
RELEASE = "nx"
NAMESPACE = "chat"


class HelmError(Exception):
    """helm exited non-zero; the message is its output."""


@dataclass
class Helm:
    binary: Path

    def run(self, *args: str | Path, values: dict[str, Any] | None = None) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
            yaml.safe_dump(values or {}, file)
            file.flush()
            done = subprocess.run(
                [self.binary, *args, *(("-f", file.name) if values is not None else ())],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        if done.returncode != 0:
            raise HelmError(done.stdout + done.stderr)
        return done.stdout

    def template(
        self, values: dict[str, Any] | None = None, chart: Path = CHART
    ) -> list[dict[str, Any]]:
        out = self.run("template", RELEASE, chart, "--namespace", NAMESPACE, values=values or {})
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def lint(self, values: dict[str, Any] | None = None) -> str:
        return self.run("lint", "--strict", CHART, values=values or {})


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{len(found)} {kind} named *{suffix}: {[d['kind'] for d in docs]}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nexus"]
    return dict(containers[0])
