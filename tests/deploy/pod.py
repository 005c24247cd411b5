"""Lay out what a rendered pod's container would see, on this machine.

Each volume mount becomes a folder under ``root`` (ConfigMap and Secret items written as
files, the Secret values taken from the chart's own Secret or, for an existing Secret the
operator manages, a stand-in), and the environment is the image's ENV overlaid by the
container's env. Absolute paths under a mount are re-rooted (``/etc/nexus/...`` becomes
``<root>/etc/nexus/...``) in the environment and the TOML file, and nothing else changes:
what the server then reads is what it would read in the pod.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chart import container, workload


def stand_in(secret: str, key: str) -> str:
    """The value a test assumes an operator's existing Secret holds."""
    return f"existing-{secret}-{key}".ljust(40, "x")


@dataclass
class Pod:
    root: Path
    env: dict[str, str]
    mounts: dict[str, dict[str, Any]]  # mountPath -> the volume behind it
    ports: dict[str, int]  # container port name -> number
    container: dict[str, Any]
    spec: dict[str, Any]

    def unroot(self, path: str | Path) -> str:
        """The path as the container sees it."""
        text = str(path)
        prefix = str(self.root)
        assert text.startswith(prefix + "/"), f"{text} is not under a mount"
        return text[len(prefix) :]


def _secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str:
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == name:
            return base64.b64decode(doc["data"][key]).decode()
    return stand_in(name, key)


def _reroot(text: str, mounts: list[str], root: Path) -> str:
    """Prefix ``root`` to each path under a mount: the whole text, or a quoted TOML string."""
    under = "|".join(re.escape(m) for m in mounts)  # longest first
    return re.sub(rf'(^|")(?=(?:{under})(?:/|"|$))', lambda m: f"{m.group(1)}{root}", text)


POD_NAME = "nx-nexus-7d9f8b6c5d-x2x4q"  # a Deployment pod's name, for fieldRef


def materialize(docs: list[dict[str, Any]], image_env: dict[str, str], root: Path) -> Pod:
    spec = workload(docs)["spec"]["template"]["spec"]
    ctr = container(docs)
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {c["metadata"]["name"] for c in workload(docs)["spec"].get("volumeClaimTemplates", ())}
    mounts: dict[str, dict[str, Any]] = {}
    for mount in ctr["volumeMounts"]:
        path = mount["mountPath"]
        where = root / path.lstrip("/")
        where.mkdir(parents=True, exist_ok=True)
        volume = volumes.get(mount["name"]) or (
            {"name": mount["name"], "persistentVolumeClaim": {}} if mount["name"] in claims else {}
        )
        assert volume, f"mount {mount['name']} has no volume"
        mounts[path] = volume
        if "configMap" in volume:
            (cm,) = [
                d
                for d in docs
                if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
            ]
            for key, text in cm["data"].items():
                (where / key).write_text(text)
        for source in volume.get("projected", {}).get("sources", ()):
            secret = source["secret"]
            for item in secret["items"]:
                file = where / item["path"]
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(_secret_value(docs, secret["name"], item["key"]))
    env = dict(image_env)
    for var in ctr["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            source = var["valueFrom"]
            if "fieldRef" in source:  # the pod's own fields: what the kubelet would give
                path = source["fieldRef"]["fieldPath"]
                assert path == "metadata.name", f"fieldRef {path} is not materialized"
                env[var["name"]] = POD_NAME
                continue
            ref = source["secretKeyRef"]
            env[var["name"]] = _secret_value(docs, ref["name"], ref["key"])
    paths = sorted(mounts, key=len, reverse=True)
    env = {k: _reroot(v, paths, root) for k, v in env.items()}
    for path, volume in mounts.items():
        if "configMap" in volume:
            for file in (root / path.lstrip("/")).iterdir():
                file.write_text(_reroot(file.read_text(), paths, root))
    ports = {p["name"]: int(p["containerPort"]) for p in ctr["ports"]}
    return Pod(root, env, mounts, ports, ctr, spec)


def server_environ(pod: Pod, **extra: str) -> dict[str, str]:
    """The environment for a process that runs as the container's command."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    return {**keep, **pod.env, **extra}
