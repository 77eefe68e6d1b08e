"""Test helpers for the bridge tests: a config whose real SQLite store holds given outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from netcortex.config import StoreConfig
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore


def config_with_outcomes(tmp_path: Path, outcomes: Iterable[ReflexOutcome]) -> Path:
    """Record ``outcomes`` in a SQLite store under ``tmp_path``; return a config file naming it.

    Runs its own event loop, so call it from synchronous tests (CLI ``main``).
    """
    db = tmp_path / "outcomes.db"

    async def fill() -> None:
        async with SqliteOutcomeStore(StoreConfig(sqlite_path=db)) as store:
            for outcome in outcomes:
                await store.record(outcome)
            await store.flush()

    asyncio.run(fill())
    path = tmp_path / "netcortex.yaml"
    path.write_text(f"store:\n  sqlite_path: {db}\n", encoding="utf-8")
    return path
