"""Fixtures shared by the unit tests: the shared inventory, and logging put back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from netcortex.memory.semantic import FileInventory
from tests.conftest import shared_fixture


@pytest.fixture
async def inventory() -> AsyncIterator[FileInventory]:
    """The shared NetBox fixture inventory (mx-west/ms-west/mr-west with Meraki serials), loaded."""
    inv = FileInventory(shared_fixture("netbox", "inventory.json"))
    await inv.start()
    yield inv
    await inv.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog's and the stdlib root logger's configuration back after the test.

    For tests that configure logging for the process (``configure_logging``, CLI
    ``main``); also clears context variables bound meanwhile.
    """
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.contextvars.clear_contextvars()
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
