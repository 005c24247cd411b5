"""Fixtures shared by the unit tests: a real LMDB file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus.store import LmdbStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    s = LmdbStore(tmp_path / "lmdb", map_size=1 << 26, durability="none")
    yield s
    s.close()
