"""A test-only in-memory ``Outbox`` (``contracts.outbox``), faithful to the Protocol.

Used by the motor unit tests to exercise ``JournalDelivery`` without a store;
the SQLite and PostgreSQL outboxes of the outcome stores pass the same tests
(the ``outbox`` / ``enqueue`` fixtures in ``conftest.py`` run each on all three).

Semantics kept exactly:

* ``claim`` leases up to ``limit`` pending jobs with ``next_attempt_at <= now``
  and no unexpired lease, oldest ``next_attempt_at`` first (then
  ``created_at``, then id), until ``now + lease_seconds``;
* ``delivered`` / ``retry`` / ``dead`` end an attempt of a **pending** job
  only: on a job already delivered or dead they change nothing (a worker
  whose lease ran out must not undo another's result); ``delivered`` is
  idempotent; ``retry`` and ``dead`` count the attempt, ``delivered`` does not
  (the Protocol counts "attempts ended" by ``retry`` and ``dead``);
* ``retry_dead`` requeues dead jobs as pending, due now, lease cleared;
* ``upsert_incident`` inserts ``incident:<id>`` or replaces an older version
  (pending, due now, lease cleared, attempts 0, no error, not finished,
  ``entry_id`` kept, ``created_at`` kept while pending); the finishing calls
  with ``version`` act only while the stored incident is that version
  (``delivered`` otherwise notes a missing ``entry_id``);
* ``supersede`` moves pending outcome jobs to ``superseded``.

Extras for tests (not Protocol): ``add`` (what a store's ``record`` does),
``job``, ``claims`` (how many times each job was handed out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from netcortex.contracts.incidents import Incident
from netcortex.contracts.outbox import (
    INCIDENT_JOB_PREFIX,
    JobState,
    JournalJob,
    OutboxStats,
    incident_job_id,
)
from netcortex.contracts.reflex import ReflexOutcome

__all__ = ["MemoryOutbox"]


class MemoryOutbox:
    """Journal jobs in a dict, leases as expiry times."""

    def __init__(self) -> None:
        self._jobs: dict[str, JournalJob] = {}
        self._leases: dict[str, datetime] = {}
        self.claims: Counter[str] = Counter()

    # ---------------------------------------------------------------- test extras

    def add(self, outcome: ReflexOutcome, created_at: datetime | None = None) -> bool:
        """Write the job of ``outcome`` (due now); ``False`` when it already exists."""
        if outcome.outcome_id in self._jobs:
            return False
        at = created_at or datetime.now(UTC)
        self._jobs[outcome.outcome_id] = JournalJob(
            job_id=outcome.outcome_id,
            outcome=outcome,
            state=JobState.PENDING,
            attempts=0,
            created_at=at,
            next_attempt_at=at,
        )
        return True

    def add_all(self, outcomes: Iterable[ReflexOutcome], created_at: datetime | None = None) -> int:
        """``add`` each; how many were new."""
        return sum(self.add(o, created_at) for o in outcomes)

    def job(self, job_id: str) -> JournalJob:
        """One job as it is now."""
        return self._jobs[job_id]

    # --------------------------------------------------------------------- Outbox

    async def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[JournalJob]:
        due = [
            j
            for j in self._jobs.values()
            if j.state is JobState.PENDING
            and j.next_attempt_at <= now
            and self._leases.get(j.job_id, now) <= now
        ]
        due.sort(key=lambda j: (j.next_attempt_at, j.created_at, j.job_id))
        picked = due[: max(0, limit)]
        until = now + timedelta(seconds=lease_seconds)
        for job in picked:
            self._leases[job.job_id] = until
            self.claims[job.job_id] += 1
        return picked

    def _other_version(self, job: JournalJob, version: int | None) -> bool:
        return version is not None and (job.incident is None or job.incident.version != version)

    async def delivered(
        self, job_id: str, entry_id: int | None, now: datetime, *, version: int | None = None
    ) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.PENDING:
            return
        if self._other_version(job, version):
            if job.entry_id is None and entry_id is not None:
                self._jobs[job_id] = replace(job, entry_id=entry_id)
            return
        self._jobs[job_id] = replace(
            job, state=JobState.DELIVERED, entry_id=entry_id, finished_at=now, last_error=""
        )
        self._leases.pop(job_id, None)

    async def retry(
        self, job_id: str, next_attempt_at: datetime, error: str, *, version: int | None = None
    ) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.PENDING or self._other_version(job, version):
            return
        self._jobs[job_id] = replace(
            job, attempts=job.attempts + 1, next_attempt_at=next_attempt_at, last_error=error
        )
        self._leases.pop(job_id, None)

    async def dead(
        self, job_id: str, reason: str, now: datetime, *, version: int | None = None
    ) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.PENDING or self._other_version(job, version):
            return
        self._jobs[job_id] = replace(
            job, state=JobState.DEAD, attempts=job.attempts + 1, last_error=reason, finished_at=now
        )
        self._leases.pop(job_id, None)

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        job_id = incident_job_id(incident.incident_id)
        job = self._jobs.get(job_id)
        if job is None:
            self._jobs[job_id] = JournalJob(
                job_id=job_id,
                outcome=None,
                incident=incident,
                state=JobState.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
            return True
        if job.incident is None or job.incident.version >= incident.version:
            return False
        self._jobs[job_id] = replace(
            job,
            incident=incident,
            state=JobState.PENDING,
            attempts=0,
            created_at=job.created_at if job.state is JobState.PENDING else now,
            # a pending job without an entry keeps a later retry (a POST may land)
            next_attempt_at=(
                job.next_attempt_at
                if job.state is JobState.PENDING
                and job.entry_id is None
                and job.next_attempt_at > now
                else now
            ),
            last_error="",
            finished_at=None,
        )
        self._leases.pop(job_id, None)
        return True

    async def supersede(self, job_ids: Sequence[str], reason: str, now: datetime) -> int:
        n = 0
        for job_id in dict.fromkeys(job_ids):
            job = self._jobs.get(job_id)
            if (
                job is None
                or job.state is not JobState.PENDING
                or job_id.startswith(INCIDENT_JOB_PREFIX)
            ):
                continue
            self._jobs[job_id] = replace(
                job, state=JobState.SUPERSEDED, finished_at=now, last_error=reason
            )
            self._leases.pop(job_id, None)
            n += 1
        return n

    async def jobs(self, state: JobState, limit: int = 100) -> Sequence[JournalJob]:
        found = sorted(
            (j for j in self._jobs.values() if j.state is state),
            key=lambda j: (j.created_at, j.job_id),
        )
        return found[: max(0, limit)]

    async def stats(self) -> OutboxStats:
        counts = Counter(j.state for j in self._jobs.values())
        pending = [j.created_at for j in self._jobs.values() if j.state is JobState.PENDING]
        return OutboxStats(
            pending=counts[JobState.PENDING],
            delivered=counts[JobState.DELIVERED],
            dead=counts[JobState.DEAD],
            oldest_pending_at=min(pending) if pending else None,
            superseded=counts[JobState.SUPERSEDED],
        )

    async def retry_dead(self, job_ids: Sequence[str] | None = None) -> int:
        wanted = None if job_ids is None else set(job_ids)
        now = datetime.now(UTC)
        n = 0
        for job_id, job in list(self._jobs.items()):
            if job.state is JobState.DEAD and (wanted is None or job_id in wanted):
                self._jobs[job_id] = replace(
                    job,
                    state=JobState.PENDING,
                    next_attempt_at=now,
                    created_at=now,
                    finished_at=None,
                )
                self._leases.pop(job_id, None)
                n += 1
        return n
