"""Motor: ``JournalDelivery`` — drains the journal outbox into NetBox, exactly once (issue 7).

One background task per engine. A round:

1. ``outbox.claim(limit, now, lease_seconds)`` leases due jobs (``batch_size``,
   or fewer when the rate limit could not get through that many within one
   lease);
2. each job (``concurrency`` at a time; every request through the client's
   one token bucket, so ``rate_per_second`` holds for the whole worker) is
   attempted, and the attempt ends with exactly one outbox call:

   * older than ``max_age_seconds`` → ``dead("too old …")``;
   * NetBox already has an entry carrying the job's marker → ``delivered``
     (the previous attempt's answer was lost, or a worker died after its POST);
   * else the entry is created → ``delivered``;
   * a transient failure (5xx, 429, timeout, refused, TLS, dropped connection,
     401/403) → ``retry`` at ``now + backoff``: ``initial_backoff * 2**attempts``
     with jitter (a random 50 to 100 % of it, so jobs failed together do not
     return together), capped at ``max_backoff_seconds``; a ``Retry-After``
     replaces it (capped the same way); a write whose answer timed out (or a
     502/504 from a proxy in front of NetBox) is retried no sooner than
     ``lease_seconds`` later, whatever the backoff: a slow NetBox may still
     store it, and the retry's marker search must see that entry;
   * a permanent failure (4xx, device unknown to NetBox) → ``dead(reason)``;
   * anything unforeseen (a bug) → ``retry`` with the error recorded and
     counted (``reason="internal"``): one bad job never stops the worker.

   A job whose lease runs short before its write is left untouched (no POST,
   no outbox call): another worker may hold it by then, and the lease's
   expiry hands it back. Likewise a failure that ends after the lease ran
   out is not recorded (``retry``/``dead`` would undo another worker's
   claim). The marker check is what makes the rest safe — a write NetBox
   received but whose answer was lost is found by the next attempt,
   wherever it runs.
3. With nothing due, the worker waits for ``notify()`` (the store calls it
   after committing new jobs), for the next retry it scheduled itself, or for
   ``poll_interval_seconds`` (jobs other workers released, leases that ran
   out) — whichever is first. No busy loop.

Incident jobs (issue 8, ``job.incident``): the entry goes on the incident's
root (``format.incident_placement``: a device, an interface or a NetBox site;
when NetBox does not know it, on the first member it knows) and carries
``netcortex-incident: <id>``. A job with an ``entry_id`` (an earlier version
was delivered) ``PATCH``es that entry (``via="updated"``); a 404 there
(an operator deleted it) falls back to the marker search. Without one, the
marker search finds an entry an earlier attempt wrote (``PATCH``ed with this
version: ``via="existing"``), else the entry is created. Every outbox call of an
incident job passes the incident's ``version``, so an attempt on a version
that was replaced meanwhile never marks the newer one done — except the retry
after a POST that may still land (a timeout), which holds back whatever version
is stored by then too (the outbox's upsert keeps that later retry): a newer
version searching before then would write a second entry.

``stop()`` is bounded: jobs not yet started are released (``retry`` due now,
so a restart picks them up at once), in-flight requests get ``stop_grace``
seconds, then are cancelled (their jobs stay leased until the lease runs out;
the marker check covers a write that reached NetBox); the cancel is repeated
for at most ``max(stop_grace, 1 s)`` more, then the attempt is left behind
(``task_stop_stuck``).

Metrics (``docs/OPERATIONS.md``): ``netcortex_journal_jobs{state}``,
``netcortex_journal_oldest_pending_seconds`` (from ``outbox.stats()``),
``netcortex_journal_delivered_total{via}``,
``netcortex_journal_failures_total{reason}``,
``netcortex_journal_dead_total{reason}``,
``netcortex_journal_delivery_seconds`` (outcome recorded → entry exists) and,
in the client, ``netcortex_journal_request_seconds{op,result}``. Log events:
``journal_delivered``, ``journal_retry`` (debug), ``journal_dead``,
``journal_unavailable`` (a warning at most every ``warn_interval`` seconds
while attempts fail), ``journal_recovered``, ``journal_job_failed`` (a bug),
``journal_outbox_failed``.

May import: ``contracts``, ``aio``, ``config``, ``errors``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
import structlog

from netcortex.aio import stop_task
from netcortex.config import JournalConfig
from netcortex.contracts.incidents import Incident
from netcortex.contracts.outbox import JournalJob, Outbox
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.metrics import Registry
from netcortex.motor.format import (
    incident_kind,
    incident_marker,
    incident_placement,
    journal_kind,
    marker,
    placement,
    render_comment,
    render_incident_comment,
)
from netcortex.motor.netbox import (
    Assignment,
    DeadlinePassed,
    JournalRequestError,
    NetboxJournalClient,
)

__all__ = ["DELIVERY_BUCKETS", "JournalDelivery"]

log = structlog.get_logger(__name__)

#: Outcome recorded → entry in NetBox, seconds: 50 ms .. a day (outages are long).
DELIVERY_BUCKETS: Final[tuple[float, ...]] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
    86400.0,
)  # fmt: skip
#: Longest error text handed to the outbox.
_MAX_ERROR: Final = 500
#: Seconds ``stop`` waits, at least, for a cancelled attempt to end (``task_stop_stuck``).
_CANCEL_WAIT: Final = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _field(outcome: ReflexOutcome | None, name: str) -> str | None:
    """``outcome.<name>`` for log lines (``None`` without an outcome)."""
    if outcome is None:
        return None
    value = getattr(outcome, name)
    return None if value is None else str(value)


def _cut(text: str, limit: int = _MAX_ERROR) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: Failures of the POST after which NetBox may still be storing the entry: it is
#: processing a request whose answer we stopped waiting for. (A connection cut off
#: after the request was handled — a lost answer — is retried at the usual pace:
#: the entry exists by then and the marker search finds it.)
_UNCERTAIN_LABELS: Final = frozenset({"timeout"})
_UNCERTAIN_STATUSES: Final = frozenset({502, 504})  # a proxy gave up; NetBox may not have


#: Permanent look-up failures after which an incident's entry goes on a member.
_UNKNOWN_LABELS: Final = frozenset({"unknown_site", "unknown_device", "no_device"})


class _UncertainWrite(Exception):
    """The POST failed in a way that leaves open whether NetBox stores the entry."""

    def __init__(self, error: JournalRequestError) -> None:
        super().__init__(str(error))
        self.error = error


class JournalDelivery:
    """The outbox → NetBox delivery worker.

    Owns ``client``'s lifecycle (``start`` opens it, ``stop`` closes it).

    Args:
        outbox: the durable jobs (the outcome store's outbox).
        client: the NetBox client (its token bucket is the rate limit).
        config: the ``journal`` section (batch, concurrency, lease, ages, backoff).
        metrics: registry for ``netcortex_journal_*``.
        initial_backoff: seconds before the first retry of a job (doubled per attempt;
            never more than ``max_backoff_seconds``).
        stop_grace: seconds ``stop`` lets in-flight requests finish before cancelling.
        stats_interval: least seconds between two ``outbox.stats()`` reads.
        warn_interval: least seconds between two ``journal_unavailable`` warnings.
        clock: wall clock (UTC) for job times (tests).
        rng: jitter source (tests pass a seeded one).
    """

    def __init__(
        self,
        outbox: Outbox,
        client: NetboxJournalClient,
        config: JournalConfig,
        metrics: Registry | None = None,
        *,
        initial_backoff: float = 1.0,
        stop_grace: float = 2.0,
        stats_interval: float = 5.0,
        warn_interval: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if not initial_backoff > 0:
            raise ValueError("initial_backoff must be > 0")
        if stop_grace < 0 or stats_interval < 0 or warn_interval < 0:
            raise ValueError("stop_grace, stats_interval and warn_interval must be >= 0")
        self._outbox = outbox
        self._client = client
        self._config = config
        self._initial_backoff = min(initial_backoff, config.max_backoff_seconds)
        self._stop_grace = stop_grace
        self._stats_interval = stats_interval
        self._warn_interval = warn_interval
        self._clock = clock
        self._rng = rng or random.Random()
        # Claim no more than the rate limit lets this worker attempt within one lease
        # (about three requests a job), so claimed jobs do not sit out their lease.
        per_lease = int(config.lease_seconds * config.rate_per_second / 3)
        self._claim_limit = max(1, min(config.batch_size, per_lease))
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_due: datetime | None = None  # earliest retry this worker scheduled
        self._stats_at = -float("inf")
        self._oldest_pending_at: datetime | None = None
        # Outage bookkeeping for the rate-limited warning and ``journal_recovered``.
        self._failing_since: float | None = None
        self._failures_since_warn = 0
        self._failures_in_outage = 0
        self._warned_at = -float("inf")

        reg = metrics or Registry()
        self._jobs = reg.gauge(
            "netcortex_journal_jobs", "Journal outbox jobs by state (from the outbox).", ("state",)
        )
        self._oldest = reg.gauge(
            "netcortex_journal_oldest_pending_seconds",
            "Age of the oldest pending journal job (0 when none is pending).",
        )
        self._delivered_total = reg.counter(
            "netcortex_journal_delivered_total",
            "Journal jobs delivered, by how (created: a new entry; existing: the marker "
            "was found, an earlier attempt had written it; updated: an incident's entry "
            "was rewritten with its newest version).",
            ("via",),
        )
        self._failures = reg.counter(
            "netcortex_journal_failures_total",
            "Journal delivery attempts that failed and will be retried, by reason.",
            ("reason",),
        )
        self._dead_total = reg.counter(
            "netcortex_journal_dead_total", "Journal jobs dead-lettered, by reason.", ("reason",)
        )
        self._latency = reg.histogram(
            "netcortex_journal_delivery_seconds",
            "Outcome recorded to its journal entry existing in NetBox (seconds).",
            buckets=DELIVERY_BUCKETS,
        )
        reg.add_collector(self._collect)

    @classmethod
    def from_config(
        cls,
        outbox: Outbox,
        config: JournalConfig,
        metrics: Registry | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> JournalDelivery:
        """The worker (and its NetBox client) the ``journal`` section describes."""
        client = NetboxJournalClient.from_config(config, metrics=metrics, transport=transport)
        return cls(outbox, client, config, metrics)

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the client and start the delivery task. Idempotent."""
        if self._task is not None:
            return
        self._stopping = False
        await self._client.start()
        self._task = asyncio.create_task(self._run(), name="journal-delivery")

    async def stop(self) -> None:
        """Stop delivering and close the client; returns within about ``stop_grace``.

        Idempotent; safe without ``start``. Jobs not yet attempted are released
        for the next start; an in-flight attempt still running after the grace
        period is cancelled (its lease runs out; its marker prevents a duplicate).
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=self._stop_grace)
            if not done:
                # bounded too: a cancel can be dropped (see netcortex.aio)
                await stop_task(
                    task,
                    timeout=max(self._stop_grace, _CANCEL_WAIT),
                    what="journal delivery",
                    logger=log,
                )
            else:
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # done: a bug that ended the loop is raised here, as before
        await self._client.close()

    def notify(self) -> None:
        """New jobs were committed: look at the outbox now (cheap; call from the loop)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the delivery task is alive."""
        return self._task is not None and not self._task.done()

    # ----------------------------------------------------------------------- loop

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                claimed = await self.run_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the outbox failed; the worker lives on
                failures += 1
                claimed = 0
                log.warning(
                    "journal_outbox_failed",
                    op="claim",
                    error=_cut(str(exc)),
                    error_type=type(exc).__name__,
                )
                self._failures.inc(reason="outbox")
                wait = min(
                    self._config.max_backoff_seconds,
                    self._initial_backoff * 2 ** min(failures, 30),
                )
                await self._sleep(wait)
                continue
            if claimed >= self._claim_limit:
                continue  # a full batch: more are likely due
            await self._sleep(self._idle_seconds())

    def _idle_seconds(self) -> float:
        wait = self._config.poll_interval_seconds
        if self._next_due is not None:
            wait = min(wait, max(0.0, (self._next_due - self._clock()).total_seconds()))
        return wait

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until ``notify``/``stop``, whichever is first."""
        if self._wake.is_set() or seconds <= 0:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that
        # lands with the wake-up (see netcortex.aio)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def run_once(self) -> int:
        """One round: claim due jobs and attempt each; how many were claimed.

        The worker's task calls this in its loop; tests may call it directly
        (without ``start``, after opening the client).

        Raises:
            Whatever ``outbox.claim`` raises (the loop logs it and backs off);
            failures of single jobs never propagate.
        """
        self._wake.clear()
        now = self._clock()
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None
        lease_end = time.monotonic() + self._config.lease_seconds  # the lease starts at `now`
        jobs = await self._outbox.claim(self._claim_limit, now, self._config.lease_seconds)
        if jobs:
            gate = asyncio.Semaphore(self._config.concurrency)

            async def one(job: JournalJob) -> None:
                async with gate:
                    await self._attempt(job, lease_end)

            await asyncio.gather(*(one(job) for job in jobs))
        await self._refresh_stats()
        return len(jobs)

    # -------------------------------------------------------------------- one job

    async def _attempt(self, job: JournalJob, lease_end: float) -> None:
        """Attempt one job; every outcome of it is handled here (never raises)."""
        if self._stopping:
            await self._finish("retry", job, self._clock(), "released: the worker stopped")
            return
        if time.monotonic() + self._config.timeout_seconds > lease_end:
            log.debug("journal_lease_short", job_id=job.job_id)
            return  # leave it: the lease runs out and the job is claimed again
        now = self._clock()
        age = (now - job.created_at).total_seconds()
        if age > self._config.max_age_seconds:
            await self._dead(
                job,
                f"too old: not delivered within {self._config.max_age_seconds:g} s "
                f"(age {age:.0f} s, {job.attempts} attempt(s); last error: "
                f"{job.last_error or 'none'})",
                "too_old",
            )
            return
        try:
            entry_id, via = await self._deliver(job, lease_end)
        except DeadlinePassed:
            log.debug("journal_lease_short", job_id=job.job_id)
        except _UncertainWrite as uncertain:
            if self._lease_lost(job, lease_end):
                return
            exc = uncertain.error
            await self._retry(job, str(exc), exc.label, exc.retry_after, settle=True)
        except JournalRequestError as exc:
            if self._lease_lost(job, lease_end):
                return
            if exc.retryable:
                await self._retry(job, str(exc), exc.label, exc.retry_after)
            else:
                await self._dead(job, str(exc), exc.label)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not stop the worker (logged with its traceback)
            log.exception("journal_job_failed", job_id=job.job_id, attempts=job.attempts)
            if self._lease_lost(job, lease_end):
                return
            await self._retry(job, f"internal error: {type(exc).__name__}: {exc}", "internal")
        else:
            await self._delivered(job, entry_id, via)

    @staticmethod
    def _lease_lost(job: JournalJob, lease_end: float) -> bool:
        """Whether the lease ran out during the attempt: then a failure is not recorded.

        Another worker may have claimed the job since; a ``retry`` or ``dead`` from
        here would release its lease (a third worker could then take the job while
        the second is still writing) or dead-letter a job it may be delivering.
        Left alone, the job is simply attempted again. (``delivered`` is always
        recorded: the entry exists, whoever holds the job.)
        """
        if time.monotonic() < lease_end:
            return False
        log.debug("journal_lease_expired", job_id=job.job_id)
        return True

    async def _deliver(self, job: JournalJob, lease_end: float) -> tuple[int, str]:
        if job.incident is not None:
            return await self._deliver_incident(job, job.incident, lease_end)
        outcome = job.outcome
        if outcome is None:
            raise ValueError(f"journal job {job.job_id} has neither an outcome nor an incident")
        device, interface = placement(outcome)
        # Every request carries the lease as its deadline: none is sent with less
        # than ``timeout_seconds`` of the lease left, and each is bounded by that,
        # so an attempt's failure is recorded while the lease still holds.
        assignment = await self._client.resolve(device, interface, outcome.site, deadline=lease_end)
        mark = marker(job.job_id)
        existing = await self._client.find_entry(mark, assignment, deadline=lease_end)
        if existing is not None:
            return existing, "existing"
        kind = journal_kind(outcome)
        comments = render_comment(outcome, api_base_url=self._config.api_base_url)
        return await self._create(assignment, kind, comments, lease_end), "created"

    async def _create(
        self, assignment: Assignment, kind: str, comments: str, lease_end: float
    ) -> int:
        """POST the entry; a failure that may still store it is an ``_UncertainWrite``."""
        try:
            return await self._client.create_entry(assignment, kind, comments, deadline=lease_end)
        except JournalRequestError as exc:
            if exc.retryable and (
                exc.label in _UNCERTAIN_LABELS or exc.status in _UNCERTAIN_STATUSES
            ):
                raise _UncertainWrite(exc) from exc
            raise

    async def _deliver_incident(
        self, job: JournalJob, incident: Incident, lease_end: float
    ) -> tuple[int, str]:
        """One entry per incident: update the known entry, else find it by marker and
        update it (it may hold an older version), else create it."""
        kind = incident_kind(incident)
        comments = render_incident_comment(incident, api_base_url=self._config.api_base_url)
        if job.entry_id is not None and await self._client.update_entry(
            job.entry_id, kind, comments, deadline=lease_end
        ):
            return job.entry_id, "updated"
        assignment = await self._place_incident(incident, lease_end)
        existing = await self._client.find_entry(
            incident_marker(incident.incident_id), assignment, deadline=lease_end
        )
        if existing is not None and await self._client.update_entry(
            existing, kind, comments, deadline=lease_end
        ):
            return existing, "existing"
        return await self._create(assignment, kind, comments, lease_end), "created"

    async def _place_incident(self, incident: Incident, lease_end: float) -> Assignment:
        """The NetBox object of the incident's root; when NetBox lacks it (a site or a
        device it does not know), the first member it knows: the incident's outcome
        jobs were superseded, so a dead incident job would leave no entry at all."""
        place = incident_placement(incident)
        try:
            if place.site is not None:
                return await self._client.resolve_site(place.site, deadline=lease_end)
            return await self._client.resolve(
                place.device, place.interface, incident.site, deadline=lease_end
            )
        except JournalRequestError as exc:
            if exc.retryable or exc.label not in _UNKNOWN_LABELS:
                raise
            unknown = exc
        for member in incident.members:  # sorted: every attempt picks the same one
            device, _, interface = member.partition("|")
            try:
                return await self._client.resolve(
                    device or None, interface or None, incident.site, deadline=lease_end
                )
            except JournalRequestError as exc:
                if exc.retryable or exc.label not in _UNKNOWN_LABELS:
                    raise
        raise unknown

    async def _delivered(self, job: JournalJob, entry_id: int, via: str) -> None:
        now = self._clock()
        if not await self._finish("delivered", job, now, entry_id=entry_id):
            return
        self._delivered_total.inc(via=via)
        incident, outcome = job.incident, job.outcome
        if incident is not None:
            latency = max(0.0, (now - incident.updated_at).total_seconds())
            self._latency.observe(latency)
            log.info(
                "journal_delivered",
                job_id=job.job_id,
                entry_id=entry_id,
                via=via,
                incident_id=incident.incident_id,
                incident_version=incident.version,
                rule=incident.rule,
                root=incident.root,
                attempts=job.attempts + 1,
                latency_s=round(latency, 3),
            )
        else:
            recorded = outcome.recorded_at if outcome is not None else job.created_at
            latency = max(0.0, (now - recorded).total_seconds())
            self._latency.observe(latency)
            log.info(
                "journal_delivered",
                job_id=job.job_id,
                entry_id=entry_id,
                via=via,
                handler_id=_field(outcome, "handler_id"),
                device=_field(outcome, "device"),
                attempts=job.attempts + 1,
                latency_s=round(latency, 3),
            )
        if self._failing_since is not None:
            log.info(
                "journal_recovered",
                down_s=round(time.monotonic() - self._failing_since, 3),
                failures=self._failures_in_outage,
            )
            self._failing_since = None
            self._failures_in_outage = 0
            self._failures_since_warn = 0

    async def _retry(
        self,
        job: JournalJob,
        error: str,
        reason: str,
        retry_after: float | None = None,
        *,
        settle: bool = False,
    ) -> None:
        now = self._clock()
        cap = self._config.max_backoff_seconds
        if retry_after is not None:
            delay = min(retry_after, cap)
        else:
            base = min(cap, self._initial_backoff * 2 ** min(job.attempts, 62))
            delay = base * self._rng.uniform(0.5, 1.0)
        if settle:
            # The write may still land (a slow NetBox finishing it after our timeout):
            # search for its marker only once it has had a lease's time to.
            delay = max(delay, self._config.lease_seconds)
        next_at = now + timedelta(seconds=delay)
        # A write that may still land holds back whatever version is stored by now
        # too: a newer version upserted meanwhile must not search (and POST a second
        # entry) before this one could land (``any_version``).
        if not await self._finish(
            "retry", job, now, _cut(error), next_at=next_at, any_version=settle
        ):
            return
        self._failures.inc(reason=reason)
        if self._next_due is None or next_at < self._next_due:
            self._next_due = next_at
        log.debug(
            "journal_retry",
            job_id=job.job_id,
            reason=reason,
            error=_cut(error, 200),
            attempts=job.attempts + 1,
            retry_in_s=round(delay, 3),
        )
        mono = time.monotonic()
        if self._failing_since is None:
            self._failing_since = mono
        self._failures_in_outage += 1
        self._failures_since_warn += 1
        if mono - self._warned_at >= self._warn_interval:
            log.warning(
                "journal_unavailable",
                reason=reason,
                error=_cut(error, 200),
                failures=self._failures_since_warn,
                failing_s=round(mono - self._failing_since, 3),
            )
            self._warned_at = mono
            self._failures_since_warn = 0

    async def _dead(self, job: JournalJob, reason_text: str, reason: str) -> None:
        now = self._clock()
        if not await self._finish("dead", job, now, _cut(reason_text)):
            return
        self._dead_total.inc(reason=reason)
        log.warning(
            "journal_dead",
            job_id=job.job_id,
            reason=reason,
            error=_cut(reason_text, 300),
            handler_id=_field(job.outcome, "handler_id"),
            device=_field(job.outcome, "device"),
            incident_id=None if job.incident is None else job.incident.incident_id,
            attempts=job.attempts + 1,
        )

    async def _finish(
        self,
        how: str,
        job: JournalJob,
        now: datetime,
        text: str = "",
        *,
        entry_id: int | None = None,
        next_at: datetime | None = None,
        any_version: bool = False,
    ) -> bool:
        """End the attempt in the outbox; ``False`` (logged, counted) when that failed.

        A failed outbox call leaves the job leased: it is claimed again when the
        lease runs out, and the marker check makes the repeat harmless.
        """
        # Incident jobs: only while the stored incident is still the version attempted.
        version = None if job.incident is None or any_version else job.incident.version
        try:
            if how == "delivered":
                await self._outbox.delivered(job.job_id, entry_id, now, version=version)
            elif how == "retry":
                await self._outbox.retry(job.job_id, next_at or now, text, version=version)
            else:
                await self._outbox.dead(job.job_id, text, now, version=version)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failed bookkeeping call is one job's problem
            self._failures.inc(reason="outbox")
            log.warning(
                "journal_outbox_failed",
                op=how,
                job_id=job.job_id,
                error=_cut(str(exc), 300),
                error_type=type(exc).__name__,
            )
            return False
        return True

    # -------------------------------------------------------------------- metrics

    async def _refresh_stats(self) -> None:
        mono = time.monotonic()
        if mono - self._stats_at < self._stats_interval:
            return
        self._stats_at = mono
        try:
            stats = await self._outbox.stats()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - gauges go stale; delivery goes on
            log.debug("journal_stats_failed", error=_cut(str(exc), 200))
            return
        self._jobs.set(stats.pending, state="pending")
        self._jobs.set(stats.delivered, state="delivered")
        self._jobs.set(stats.dead, state="dead")
        self._jobs.set(stats.superseded, state="superseded")
        self._oldest_pending_at = stats.oldest_pending_at

    def _collect(self) -> None:
        oldest = self._oldest_pending_at
        age = 0.0 if oldest is None else max(0.0, (self._clock() - oldest).total_seconds())
        self._oldest.set(age)
