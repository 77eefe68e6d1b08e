"""Contract-suite fixtures: one ``backend`` parameter per implementation.

The ``nats`` parameter carries ``pytest.mark.nats`` and uses the session
``nats_server`` (a real JetStream server); every bus lives in its own namespace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from netcortex.contracts.bus import EventBus
from tests.conftest import BusFactory

MakeBus = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def backend(request: pytest.FixtureRequest) -> str:
    """The bus backend under test."""
    name: str = request.param
    return name


@pytest.fixture
def make_bus(backend: str, bus_factory: BusFactory) -> MakeBus:
    """``await make_bus(**bus_config_overrides)``: a started bus of the backend under test."""

    async def make(**overrides: Any) -> EventBus:
        return await bus_factory(backend, **overrides)

    return make


@pytest.fixture
async def bus(make_bus: MakeBus) -> EventBus:
    """A started bus of the backend under test, with default settings."""
    return await make_bus()
