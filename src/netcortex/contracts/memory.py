"""Contracts: memory Protocols — ``OutcomeStore`` (episodic) and its query (stdlib only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

__all__ = ["OutcomeQuery", "OutcomeStore"]


@dataclass(frozen=True, slots=True)
class OutcomeQuery:
    """Filters for ``OutcomeStore.query``; ``None`` means "any".

    Attributes:
        since, until: ``recorded_at`` range, inclusive ``since``, exclusive ``until``.
        handler_id, device: exact matches.
        severity: exact severities to include.
        kind: exact kinds to include.
        limit: at most this many rows, newest first.
    """

    since: datetime | None = None
    until: datetime | None = None
    handler_id: str | None = None
    severity: Sequence[Severity] | None = None
    kind: Sequence[OutcomeKind] | None = None
    device: str | None = None
    limit: int = 100


class OutcomeStore(Protocol):
    """Durable record of ``ReflexOutcome``s (episodic memory).

    Writes are idempotent on ``outcome_id`` (a re-delivered event never makes a
    second row). Implementations batch writes; ``record`` may return before the
    row is durable, ``flush`` returns when everything recorded so far is. Safe to
    call from many tasks at once.
    """

    async def start(self) -> None:
        """Open the store, create the schema. Raises ``StoreError``."""
        ...

    async def close(self) -> None:
        """Flush and close. Idempotent; safe without ``start``."""
        ...

    async def record(self, outcome: ReflexOutcome) -> None:
        """Queue one outcome for writing (bounded latency, batched).

        Raises:
            netcortex.errors.StoreError: the store is closed or failing.
        """
        ...

    async def flush(self) -> None:
        """Return when every outcome recorded before the call is durable.

        Raises:
            netcortex.errors.StoreError: the write failed.
        """
        ...

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        """Return outcomes matching ``query``, newest ``recorded_at`` first.

        Raises:
            netcortex.errors.StoreError: the read failed.
        """
        ...

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        """Return one outcome by id, or ``None``."""
        ...
