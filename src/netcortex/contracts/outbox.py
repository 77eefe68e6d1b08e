"""Contracts: the durable journal outbox (issue 7; stdlib only, no I/O).

An outcome that should appear in NetBox gets a **journal job** written in the
same transaction as the outcome itself (the outcome store decides with the
journal policy at ``record`` time), so a job exists exactly when its outcome
does. A delivery worker drains the jobs through an ``Outbox``:

1. ``claim`` leases due jobs (``next_attempt_at <= now``, not leased by someone
   else) for ``lease_seconds``; two workers never hold one job at once, and a
   worker that dies simply lets its leases run out.
2. The worker delivers (checking NetBox for an entry carrying the job's
   idempotency marker first) and ends the attempt with exactly one of
   ``delivered``, ``retry`` (a later ``next_attempt_at``, the error kept) or
   ``dead`` (a reason; never retried until an operator requeues it with
   ``retry_dead``).

``job_id`` is the outcome id: one job per outcome, so re-recording an outcome
(redelivery, a restart) never makes a second job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from netcortex.contracts.reflex import ReflexOutcome

__all__ = ["JobState", "JournalJob", "Outbox", "OutboxStats"]


class JobState(StrEnum):
    """Where a journal job is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class JournalJob:
    """One outcome waiting for (or done with) its NetBox journal entry.

    Attributes:
        job_id: the outcome id (one job per outcome).
        outcome: the outcome to write about.
        state: ``JobState``.
        attempts: delivery attempts ended so far (``retry`` and ``dead`` count).
        created_at: when the job was written (with its outcome) or last requeued by
            ``retry_dead`` (the age ``journal.max_age_seconds`` is measured from).
        next_attempt_at: earliest time the job may be claimed again.
        last_error: why the last attempt failed (``""`` if none).
        entry_id: the NetBox journal entry id once delivered.
        finished_at: when it was delivered or dead-lettered.
    """

    job_id: str
    outcome: ReflexOutcome
    state: JobState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str = ""
    entry_id: int | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts by state and the age of the backlog."""

    pending: int
    delivered: int
    dead: int
    #: ``created_at`` of the oldest pending job, ``None`` when nothing is pending
    oldest_pending_at: datetime | None


class Outbox(Protocol):
    """Durable journal jobs: claimed with a lease, finished exactly once."""

    async def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[JournalJob]:
        """Lease up to ``limit`` due pending jobs (oldest ``next_attempt_at`` first).

        A job is due when ``next_attempt_at <= now`` and no unexpired lease holds
        it; claiming sets a lease until ``now + lease_seconds``.
        """
        ...

    async def delivered(self, job_id: str, entry_id: int | None, now: datetime) -> None:
        """The entry exists in NetBox: the job is done (idempotent)."""
        ...

    async def retry(self, job_id: str, next_attempt_at: datetime, error: str) -> None:
        """The attempt failed transiently: try again at ``next_attempt_at``; lease released."""
        ...

    async def dead(self, job_id: str, reason: str, now: datetime) -> None:
        """The job cannot succeed (4xx other than 429, too old): keep it with ``reason``."""
        ...

    async def jobs(self, state: JobState, limit: int = 100) -> Sequence[JournalJob]:
        """Jobs in ``state``, oldest first (for ``netcortex outbox`` and the API)."""
        ...

    async def stats(self) -> OutboxStats:
        """Counts by state and the oldest pending job's ``created_at``."""
        ...

    async def retry_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Requeue dead jobs (all, or the given ones) as pending, due now, their age
        restarting now (``created_at``); how many."""
        ...
