from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module, default settings, fresh LMDB."""
    srv = start_server(tmp_path_factory.mktemp("data"))
    yield srv
    assert srv.stop() == 0, "".join(srv.output)
