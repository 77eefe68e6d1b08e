"""Fixtures for the webhook receiver tests: a real memory bus.

The shared inventory fixture (``inventory``) comes from ``tests/unit/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from netcortex.config import BusConfig
from netcortex.thalamus import InMemoryEventBus


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    """A started in-memory bus, closed after the test."""
    bus = InMemoryEventBus(BusConfig(backend="memory"))
    await bus.start()
    yield bus
    await bus.close()
