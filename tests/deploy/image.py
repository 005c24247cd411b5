"""What the image would hold, built without a Docker engine: the Dockerfile's build stage
(`pip wheel` of the build context, which compiles the Cython) and its runtime stage (a clean
venv that installs only those wheels, with --no-index).

Built once per build-context digest into the test cache, where the image's non-root user
can read it; builds older than a day are removed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from .chart import ROOT
from .tools import locked

IGNORED_PARTS = {"__pycache__"}
IGNORED_SUFFIXES = {".so", ".c", ".pyc"}  # .dockerignore: src/**/*.so, src/**/*.c


def context_files() -> list[Path]:
    """The files the Docker build context holds (the .dockerignore allow-list)."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    files: list[Path] = []
    for name in allowed:
        path = ROOT / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [
            f.relative_to(ROOT)
            for f in candidates
            if f.is_file() and not IGNORED_PARTS & set(f.parts) and f.suffix not in IGNORED_SUFFIXES
        ]
    return files


# The runtime stage's interpreter: a system Python every user can run (the test runner's
# own may live under /root, which the image's user cannot enter), of the image's minor.
RUNTIME_PYTHON = Path("/usr/bin/python3")


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())  # this recipe, too
    for rel in files:
        h.update(str(rel).encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run(*cmd: str | Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}")


def image_venv() -> Path:
    """A venv holding what the runtime stage installs; its bin/ has nexus."""
    files = context_files()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    if not RUNTIME_PYTHON.is_file():
        raise RuntimeError(f"{RUNTIME_PYTHON} is required (Debian: python3, python3-venv)")
    with locked(f"image-{_digest(files)}") as where:
        venv = where / "venv"
        if (where / "complete").is_file():
            return venv
        for old in where.parent.glob("image-*"):
            # a day old: another checkout's run may still be using a recent one
            if old.is_dir() and old != where and time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(where, ignore_errors=True)
        context, wheels = where / "context", where / "wheels"
        for rel in files:
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, context / rel)
        # build stage: RUN pip wheel --no-cache-dir --wheel-dir /wheels .
        _run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-cache-dir",
            "--wheel-dir",
            wheels,
            context,
        )
        # runtime stage: a clean interpreter, RUN pip install --no-index --find-links=/wheels
        _run(RUNTIME_PYTHON, "-m", "venv", venv)
        _run(
            venv / "bin/python",
            "-m",
            "pip",
            "install",
            "-q",
            "--no-cache-dir",
            "--no-index",
            "--find-links",
            wheels,
            f"nexus-rt=={version}",
        )
        shutil.rmtree(context)
        (where / "complete").write_text(version + "\n")
        return venv
