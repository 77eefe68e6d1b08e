"""Fixtures for reflex tests: the real in-memory bus and a real SQLite outcome store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netcortex.config import BusConfig, StoreConfig
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.thalamus.memory import InMemoryEventBus


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryEventBus]:
    """A started in-memory event bus, closed after the test."""
    async with InMemoryEventBus(BusConfig(publish_timeout=2.0)) as b:
        yield b


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteOutcomeStore]:
    """A started SQLite outcome store in the test's temporary directory."""
    config = StoreConfig(sqlite_path=tmp_path / "outcomes.db", flush_interval=0.002)
    async with SqliteOutcomeStore(config) as s:
        yield s
