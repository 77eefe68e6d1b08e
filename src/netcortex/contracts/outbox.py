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

Incident jobs (issue 8): with association enabled, the journal gets one entry
per **incident** instead of one per outcome. Its job (``job_id``
``incident:<incident_id>``; outcome ids are hex digests and never contain
``:``) carries the incident as of its newest version and is rewritten by
``upsert_incident`` on every change: pending again, due now, its ``entry_id``
kept so the worker updates (``PATCH``) the same entry. The outcome jobs of the
incident's evidence are moved to ``superseded`` (``supersede``) before they
become due (the store writes them ``journal.incident_hold_seconds`` late).
``delivered``/``retry``/``dead`` of an incident job take the ``version`` the
attempt was about: an attempt on version N that ends after version N+1 was
upserted changes nothing (``delivered`` only notes the entry id, so N+1
updates that entry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from netcortex.contracts.incidents import Incident
from netcortex.contracts.reflex import ReflexOutcome

__all__ = [
    "INCIDENT_JOB_PREFIX",
    "JobState",
    "JournalJob",
    "Outbox",
    "OutboxStats",
    "incident_job_id",
]

#: ``job_id`` of an incident job is ``f"{INCIDENT_JOB_PREFIX}{incident_id}"``.
INCIDENT_JOB_PREFIX = "incident:"


def incident_job_id(incident_id: str) -> str:
    """The job id of the journal job about incident ``incident_id``."""
    return f"{INCIDENT_JOB_PREFIX}{incident_id}"


class JobState(StrEnum):
    """Where a journal job is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    #: an outcome job whose outcome became part of an incident (the incident's
    #: entry covers it); never delivered, pruned like delivered and dead jobs
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class JournalJob:
    """One outcome (or incident) waiting for (or done with) its NetBox journal entry.

    Attributes:
        job_id: the outcome id (one job per outcome), or ``incident:<incident_id>``.
        outcome: the outcome to write about (``None`` for an incident job).
        state: ``JobState``.
        attempts: delivery attempts ended so far (``retry`` and ``dead`` count).
        created_at: when the job was written (with its outcome) or last requeued by
            ``retry_dead`` (the age ``journal.max_age_seconds`` is measured from).
        next_attempt_at: earliest time the job may be claimed again.
        last_error: why the last attempt failed (``""`` if none).
        entry_id: the NetBox journal entry id once delivered.
        finished_at: when it was delivered, dead-lettered or superseded.
        incident: the incident to write about (incident jobs only), newest version.
    """

    job_id: str
    outcome: ReflexOutcome | None
    state: JobState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str = ""
    entry_id: int | None = None
    finished_at: datetime | None = None
    incident: Incident | None = None

    @property
    def about(self) -> str:
        """What the job is about, for logs and tables: the outcome's target or the
        incident's root."""
        if self.incident is not None:
            return self.incident.root
        return "" if self.outcome is None else self.outcome.target


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts by state and the age of the backlog."""

    pending: int
    delivered: int
    dead: int
    #: ``created_at`` of the oldest pending job, ``None`` when nothing is pending
    oldest_pending_at: datetime | None
    superseded: int = 0


class Outbox(Protocol):
    """Durable journal jobs: claimed with a lease, finished exactly once."""

    async def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[JournalJob]:
        """Lease up to ``limit`` due pending jobs (oldest ``next_attempt_at`` first).

        A job is due when ``next_attempt_at <= now`` and no unexpired lease holds
        it; claiming sets a lease until ``now + lease_seconds``.
        """
        ...

    async def delivered(
        self, job_id: str, entry_id: int | None, now: datetime, *, version: int | None = None
    ) -> None:
        """The entry exists in NetBox: the job is done (idempotent).

        With ``version`` (incident jobs: the incident version the attempt wrote),
        only when the stored incident is still that version; otherwise only the
        ``entry_id`` is noted (when the job has none), the job stays pending.
        """
        ...

    async def retry(
        self, job_id: str, next_attempt_at: datetime, error: str, *, version: int | None = None
    ) -> None:
        """The attempt failed transiently: try again at ``next_attempt_at``; lease released.
        With ``version``: only when the stored incident is still that version."""
        ...

    async def dead(
        self, job_id: str, reason: str, now: datetime, *, version: int | None = None
    ) -> None:
        """The job cannot succeed (4xx other than 429, too old): keep it with ``reason``.
        With ``version``: only when the stored incident is still that version."""
        ...

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        """Write the job of ``incident`` (``incident:<id>``), due now; ``True`` when written.

        A new job is inserted; an existing one is replaced only when its stored
        incident version is older: the new payload, pending, due ``now``, lease
        cleared, attempts 0, no error, not finished, ``entry_id`` **kept**,
        ``created_at`` kept while it was pending (else ``now``). A pending job
        without an ``entry_id`` keeps a ``next_attempt_at`` later than ``now``:
        its last POST may still land, and searching before then would write a
        second entry.
        """
        ...

    async def supersede(self, job_ids: Sequence[str], reason: str, now: datetime) -> int:
        """Move the given *pending outcome* jobs to ``superseded`` (finished ``now``,
        ``last_error`` = ``reason``); others are left alone. How many moved."""
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
