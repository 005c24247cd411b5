"""The hand-written .pyi stubs match the compiled _speedups modules."""

import subprocess
import sys
from pathlib import Path

MODULES = [
    "nexus._speedups.framing",
    "nexus._speedups.router",
    "nexus._speedups.ratelimit",
    "nexus._speedups.histogram",
    "nexus._speedups.records",
]


def test_stubs_match_compiled_modules(tmp_path: Path) -> None:
    allowlist = Path(__file__).parent.parent / "stubtest-allowlist.txt"
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *MODULES, "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
