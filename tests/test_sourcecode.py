"""The linters, the type checker and the import contracts run inside the suite (as uvloop
does in tests/test_sourcecode.py), so `make test` is the one gate: a lint, type or layering
violation fails it like a broken behaviour would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["src", "tests", "benchmarks", "examples"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_ruff_lint() -> None:
    out = run("ruff", "check", "--output-format", "concise", *CHECKED)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format() -> None:
    out = run("ruff", "format", "--check", *CHECKED)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict() -> None:
    out = run("mypy")  # [tool.mypy] in pyproject.toml: strict, files = src/nexus
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_contracts() -> None:
    # The sources, not the installed copy: the contracts are about the code being changed.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint_imports), "--config", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout
