"""Fixtures for the webhook receiver tests: a real memory bus and the shared inventory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from netcortex.config import BusConfig
from netcortex.memory.semantic import FileInventory
from netcortex.thalamus import InMemoryEventBus
from tests.conftest import shared_fixture


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    """A started in-memory bus, closed after the test."""
    bus = InMemoryEventBus(BusConfig(backend="memory"))
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
async def inventory() -> AsyncIterator[FileInventory]:
    """The shared NetBox fixture inventory (mx-west/ms-west/mr-west with Meraki serials)."""
    inv = FileInventory(shared_fixture("netbox", "inventory.json"))
    await inv.start()
    yield inv
    await inv.close()
