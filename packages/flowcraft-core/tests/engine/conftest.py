"""Fixtures for the decision-core tests."""

from __future__ import annotations

import pytest
from flowcraft.core.testing import Behaviours


@pytest.fixture
def b() -> Behaviours:
    return Behaviours()
