"""The JavaScript client's unit tests (clients/js/test, Node's built-in test runner) as
part of the Python suite, so `make test` runs them. No Node means a failure, not a skip:
the client would go untested."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"


def test_node_test_runner_passes() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (apt-get install nodejs): the JS client is untested")
    result = subprocess.run(
        [node, "--test", "test/"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout, result.stdout


def test_published_client_is_the_served_one() -> None:
    # clients/js/nexus.js links to the file the web app serves: one source, no copies.
    published = CLIENT / "nexus.js"
    served = Path(__file__).resolve().parents[2] / "src" / "nexus" / "web" / "static" / "nexus.js"
    assert published.resolve() == served.resolve()
