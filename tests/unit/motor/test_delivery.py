"""Unit tests for ``netcortex.motor.delivery``: the outbox → NetBox worker, with faults.

Every test runs the real client against the real (threaded, schema-validating)
fake NetBox, and the worker against the ``outbox`` fixture: the test-only
``MemoryOutbox``, ``SqliteOutbox`` and ``PostgresOutbox`` (``conftest.py``). The
1,000-job outage test runs on PostgreSQL only (about 15 s a backend; the e2e
suite runs the same scenario through the real process on SQLite). Tests wait on
conditions with deadlines, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.config import JournalConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.outbox import JobState, JournalJob, Outbox
from netcortex.errors import MotorErrorReason
from netcortex.metrics import Registry
from netcortex.motor.delivery import JournalDelivery
from netcortex.motor.format import MARKER_PREFIX, marker
from netcortex.motor.netbox import Assignment, JournalRequestError, NetboxJournalClient
from tests.fake_netbox import DEFAULT_TOKEN, FakeNetbox
from tests.unit.motor.conftest import Enqueue, outcome
from tests.unit.motor.memory_outbox import MemoryOutbox

#: (device, interface) pairs of the fixture inventory the bulk tests spread over.
PLACES = [
    ("sw1-north", "GigabitEthernet1/0/3"),
    ("sw1-north", "GigabitEthernet1/0/1"),
    ("r1-north", "GigabitEthernet0/0/0"),
    ("r1-south", "GigabitEthernet0/0/1"),
    ("sw2-north", "Port 99"),  # unknown interface: the entry goes on the device
]


def many(n: int, start: int = 0) -> list[Any]:
    """``n`` distinct high outcomes spread over ``PLACES``."""
    return [
        outcome(i, device=PLACES[i % len(PLACES)][0], interface=PLACES[i % len(PLACES)][1])
        for i in range(start, start + n)
    ]


def journal_config(fake: FakeNetbox, **overrides: Any) -> JournalConfig:
    """A journal section for ``fake`` with test-sized timings."""
    values: dict[str, Any] = {
        "enabled": True,
        "netbox_url": fake.url,
        "netbox_token": DEFAULT_TOKEN,
        "rate_per_second": 5000.0,
        "timeout_seconds": 2.0,
        "max_backoff_seconds": 0.2,
        "poll_interval_seconds": 0.2,
        "concurrency": 8,
        "api_base_url": "https://netcortex.example.com",
    }
    values.update(overrides)
    return JournalConfig(**values)


def make_worker(
    outbox: Outbox,
    fake: FakeNetbox,
    registry: Registry | None = None,
    *,
    client: NetboxJournalClient | None = None,
    stop_grace: float = 2.0,
    **overrides: Any,
) -> JournalDelivery:
    """A worker on ``outbox`` delivering to ``fake`` (fast backoff, seeded jitter)."""
    config = journal_config(fake, **overrides)
    registry = registry or Registry()
    return JournalDelivery(
        outbox,
        client or NetboxJournalClient.from_config(config, metrics=registry),
        config,
        registry,
        initial_backoff=0.02,
        stop_grace=stop_grace,
        stats_interval=0.0,
        warn_interval=0.5,
        rng=random.Random(7),
    )


async def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``check`` (sync or async) every 10 ms until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.01)


def entries_per_marker(fake: FakeNetbox) -> Counter[str]:
    """How many stored entries carry each idempotency marker (one pass over the journal)."""
    with fake.lock:
        comments = [e["comments"] for e in fake.journal]
    return Counter(
        line.strip()
        for text in comments
        for line in text.splitlines()
        if line.strip().startswith(MARKER_PREFIX)
    )


async def delivered(outbox: Outbox, n: int) -> bool:
    """Whether at least ``n`` jobs are delivered."""
    return (await outbox.stats()).delivered >= n


def value(registry: Registry, name: str, **labels: str) -> float:
    """A counter's value."""
    metric = registry.get(name)
    assert metric is not None, name
    return metric.value(**labels)  # type: ignore[union-attr]


class TestDelivery:
    async def test_delivers_one_entry_with_kind_marker_and_metrics(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A pending job becomes one danger entry on the interface; the job is delivered."""
        made = outcome(summary="Link down on sw1-north GigabitEthernet1/0/3")
        await enqueue([made])
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        with capture_logs() as logs:
            await worker.start()
            try:
                await wait_until(lambda: delivered(outbox, 1), what="delivery")
            finally:
                await worker.stop()
        (entry,) = netbox.journal
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
            "dcim.interface",
            8,
        )
        assert entry["kind"]["value"] == "danger"
        assert entry["comments"].splitlines()[-1] == marker(made.outcome_id)
        assert "https://netcortex.example.com/api/v1/outcomes/" in entry["comments"]
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert job.entry_id == entry["id"]
        assert value(registry, "netcortex_journal_delivered_total", via="created") == 1
        assert "netcortex_journal_delivery_seconds_count 1" in registry.render()
        assert 'netcortex_journal_jobs{state="delivered"} 1' in registry.render()
        events = [e for e in logs if e["event"] == "journal_delivered"]
        assert events[0]["entry_id"] == entry["id"]
        assert DEFAULT_TOKEN not in repr(logs)

    async def test_notify_wakes_an_idle_worker(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """With a long poll interval, ``notify`` makes the worker look at once."""
        worker = make_worker(outbox, netbox, poll_interval_seconds=60.0)
        await worker.start()
        try:
            await asyncio.sleep(0.05)  # let it go idle: nothing is pending yet
            await enqueue([outcome()])
            worker.notify()
            await wait_until(lambda: delivered(outbox, 1), timeout=5, what="wake-up")
        finally:
            await worker.stop()

    async def test_recovery_is_success(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A link_up recovery becomes a ``success`` entry."""
        await enqueue(
            [outcome(handler_id="link_up", event_class="link_up", severity=Severity.INFO)]
        )
        worker = make_worker(outbox, netbox)
        async with worker._client:
            assert await worker.run_once() == 1
        assert netbox.journal[0]["kind"]["value"] == "success"


class TestFaults:
    # The heavy one on one real backend only (see the module docstring).
    @pytest.mark.parametrize("outbox_place", ["postgres"], indirect=True)
    async def test_netbox_down_then_up_gives_exactly_one_entry_per_outcome(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """1,000 jobs while NetBox refuses connections → after it returns, exactly 1,000
        entries, one per marker; the outage is logged (rate-limited) and its end too."""
        outcomes = many(1000)
        netbox.stop()
        await enqueue(outcomes)
        registry = Registry()
        worker = make_worker(outbox, netbox, registry, batch_size=100, concurrency=4)
        with capture_logs() as logs:
            began = time.monotonic()
            await worker.start()
            try:
                await wait_until(
                    lambda: (
                        value(registry, "netcortex_journal_failures_total", reason="unavailable")
                        >= 1000
                    ),
                    what="every job to fail once",
                )
                outage = time.monotonic() - began
                failures = value(registry, "netcortex_journal_failures_total", reason="unavailable")
                netbox.start()
                await wait_until(lambda: delivered(outbox, 1000), timeout=40, what="1000")
            finally:
                await worker.stop()
        assert len(netbox.journal) == 1000
        assert entries_per_marker(netbox) == {marker(o.outcome_id): 1 for o in outcomes}
        stats = await outbox.stats()
        assert (stats.pending, stats.dead, stats.delivered) == (0, 0, 1000)
        names = [e["event"] for e in logs]
        assert "journal_recovered" in names
        warnings = names.count("journal_unavailable")
        # rate-limited: one per warn_interval (0.5 s) of outage, not one per failure (the
        # bound follows the outage's wall time: a loaded machine makes it longer)
        assert 1 <= warnings <= outage / 0.5 + 2
        assert warnings < failures / 10

    async def test_429_and_503_bursts_are_ridden_out(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """Bursts of 429 (with Retry-After) and 503 delay delivery; nothing is lost or doubled."""
        outcomes = many(60)
        await enqueue(outcomes)
        netbox.inject(count=15, status=429, retry_after="0.1")
        netbox.inject(count=15, status=503)
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        await worker.start()
        try:
            await wait_until(lambda: delivered(outbox, 60), what="60 deliveries")
        finally:
            await worker.stop()
        assert len(netbox.journal) == 60
        assert entries_per_marker(netbox) == {marker(o.outcome_id): 1 for o in outcomes}
        assert value(registry, "netcortex_journal_failures_total", reason="rate_limited") >= 1
        assert value(registry, "netcortex_journal_failures_total", reason="server_error") >= 1

    async def test_retry_after_sets_the_next_attempt(self, netbox: FakeNetbox) -> None:
        """A 429's ``Retry-After`` (no jitter) is when the job is due again."""
        outbox = MemoryOutbox()
        made = outcome()
        outbox.add(made)
        netbox.inject(status=429, retry_after="7")
        fixed = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
        config = journal_config(netbox, max_backoff_seconds=60.0)
        client = NetboxJournalClient.from_config(config)
        worker = JournalDelivery(outbox, client, config, clock=lambda: fixed)
        outbox._jobs[made.outcome_id] = replace(
            outbox.job(made.outcome_id), created_at=fixed, next_attempt_at=fixed
        )
        client.bucket.pause(0)  # the 429 pauses the bucket 7 s; nothing else is sent here
        async with client:
            assert await worker.run_once() == 1
        job = outbox.job(made.outcome_id)
        assert job.next_attempt_at == fixed + timedelta(seconds=7)
        assert (job.state, job.attempts) == (JobState.PENDING, 1)
        assert "429" in job.last_error

    @pytest.mark.parametrize("attempts", [0, 1, 3, 30])
    async def test_backoff_doubles_with_jitter_up_to_the_cap(
        self, netbox: FakeNetbox, attempts: int
    ) -> None:
        """After n attempts the next one is 50-100 % of initial * 2**n seconds away, capped."""
        outbox = MemoryOutbox()
        made = outcome()
        outbox.add(made)
        outbox._jobs[made.outcome_id] = replace(outbox.job(made.outcome_id), attempts=attempts)
        netbox.inject(status=503)
        fixed = datetime.now(UTC)
        config = journal_config(netbox, max_backoff_seconds=10.0)
        client = NetboxJournalClient.from_config(config)
        worker = JournalDelivery(outbox, client, config, initial_backoff=0.5, clock=lambda: fixed)
        async with client:
            await worker.run_once()
        delay = (outbox.job(made.outcome_id).next_attempt_at - fixed).total_seconds()
        base = min(10.0, 0.5 * 2**attempts)
        assert base / 2 <= delay <= base

    async def test_lost_response_does_not_duplicate(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A POST NetBox stored but whose answer was lost is found by marker on the retry."""
        made = outcome()
        await enqueue([made])
        netbox.inject(lose_response=True, method="POST")
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        await worker.start()
        try:
            await wait_until(lambda: delivered(outbox, 1), what="delivery")
        finally:
            await worker.stop()
        assert netbox.journal_count(marker(made.outcome_id)) == 1
        assert len(netbox.journal) == 1
        assert value(registry, "netcortex_journal_failures_total", reason="disconnected") == 1
        assert value(registry, "netcortex_journal_delivered_total", via="existing") == 1
        (job,) = await outbox.jobs(JobState.DELIVERED)
        assert job.entry_id == netbox.journal[0]["id"]

    async def test_unknown_device_is_dead_and_blocks_nothing(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A job for a device NetBox lacks is dead-lettered with the reason; others go through."""
        ghost = outcome(999, device="ghost-router", interface="Gi0/1")
        await enqueue([ghost, *many(10)])
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        with capture_logs() as logs:
            await worker.start()
            try:
                await wait_until(lambda: delivered(outbox, 10), what="10 deliveries")
                await wait_until(lambda: outbox.stats(), what="stats")
            finally:
                await worker.stop()
        (dead,) = await outbox.jobs(JobState.DEAD)
        assert dead.job_id == ghost.outcome_id
        assert "device 'ghost-router' not in NetBox" in dead.last_error
        assert value(registry, "netcortex_journal_dead_total", reason="unknown_device") == 1
        assert len(netbox.journal) == 10
        assert any(e["event"] == "journal_dead" and e["job_id"] == ghost.outcome_id for e in logs)

    async def test_rejected_write_is_dead_with_netbox_detail(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A 400 on the write is permanent: dead-lettered with NetBox's detail."""
        await enqueue([outcome()])
        netbox.inject(status=400, method="POST")
        worker = make_worker(outbox, netbox)
        async with worker._client:
            await worker.run_once()
        (dead,) = await outbox.jobs(JobState.DEAD)
        assert "HTTP 400" in dead.last_error
        assert "injected" in dead.last_error

    async def test_too_old_job_is_dead(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A job older than ``max_age_seconds`` is dead-lettered without a request."""
        old = datetime.now(UTC) - timedelta(days=2)
        await enqueue([outcome()], created_at=old)
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        async with worker._client:
            await worker.run_once()
        (dead,) = await outbox.jobs(JobState.DEAD)
        assert dead.last_error.startswith("too old")
        assert netbox.requests == []
        assert value(registry, "netcortex_journal_dead_total", reason="too_old") == 1

    async def test_a_bug_in_one_job_is_retried_and_counted(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """An unforeseen exception fails only its job (retried with the error); others go on."""
        victim = outcome(500)
        others = many(5)
        await enqueue([victim, *others])

        class Flaky(NetboxJournalClient):
            """Raises once for the victim's entry, like a bug would."""

            tripped = False

            async def create_entry(
                self, assignment: Assignment, kind: str, comments: str, **kw: Any
            ) -> int:
                if marker(victim.outcome_id) in comments and not Flaky.tripped:
                    Flaky.tripped = True
                    raise RuntimeError("a bug")
                return await super().create_entry(assignment, kind, comments, **kw)

        registry = Registry()
        config = journal_config(netbox)
        worker = make_worker(
            outbox, netbox, registry, client=Flaky.from_config(config, metrics=registry)
        )
        with capture_logs() as logs:
            await worker.start()
            try:
                await wait_until(lambda: delivered(outbox, 6), what="6 deliveries")
            finally:
                await worker.stop()
        assert value(registry, "netcortex_journal_failures_total", reason="internal") == 1
        assert any(e["event"] == "journal_job_failed" for e in logs)
        assert len(netbox.journal) == 6


class TestLimits:
    async def test_rate_limit_holds_across_all_requests(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """Requests beyond the first second's burst arrive no faster than ``rate_per_second``."""
        rate = 50.0
        await enqueue(many(40))
        worker = make_worker(outbox, netbox, rate_per_second=rate)
        await worker.start()
        try:
            await wait_until(lambda: delivered(outbox, 40), what="40 deliveries")
        finally:
            await worker.stop()
        times = sorted(r.at for r in netbox.requests)
        burst = rate  # the bucket starts full: one second's worth
        assert len(times) > burst
        span = times[-1] - times[0]
        # Lower bound only (no flaky upper bound): the bucket cannot be beaten. Times
        # are server arrivals: a first request delayed on a loaded machine shortens
        # the span, so allow a quarter second of latency (without the limit the
        # ~120 requests would all arrive within about half a second and still fail).
        assert len(times) - burst <= rate * (span + 0.25) * 1.1 + 1

    async def test_stop_while_netbox_hangs_is_bounded(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """``stop`` returns within its grace period even when every request hangs."""
        await enqueue(many(5))
        netbox.inject(count=None, seconds=60, delay=30.0)
        worker = make_worker(outbox, netbox, stop_grace=0.3, timeout_seconds=10.0)
        await worker.start()
        await wait_until(lambda: len(netbox.requests) >= 1, what="a hanging request")
        started = time.monotonic()
        await asyncio.wait_for(worker.stop(), timeout=5)
        assert time.monotonic() - started < 2.0
        assert not worker.running
        stats = await outbox.stats()
        assert (stats.pending, stats.delivered, stats.dead) == (5, 0, 0)
        netbox.clear_faults()

    async def test_a_cancel_landing_with_a_wake_up_ends_the_worker(
        self, netbox: FakeNetbox
    ) -> None:
        """An idle worker cancelled right after ``notify`` ends: its wait for the wake-up
        does not drop the cancel (Python 3.11's ``asyncio.wait_for`` returned the
        wake-up and dropped it, and the worker went on for ever)."""
        claims: list[int] = []

        class CountingOutbox(MemoryOutbox):
            async def claim(
                self, limit: int, now: datetime, lease_seconds: float
            ) -> list[JournalJob]:
                claims.append(limit)
                return await super().claim(limit, now, lease_seconds)

        worker = make_worker(CountingOutbox(), netbox, poll_interval_seconds=30.0)
        await worker.start()
        try:
            await wait_until(lambda: claims, what="the first claim")  # then it waits 30 s
            task = worker._task
            assert task is not None
            worker.notify()  # the wake-up is set ...
            task.cancel()  # ... and the cancel lands before the worker runs again
            done, _ = await asyncio.wait({task}, timeout=2.0)
            assert done, "the worker outlived its cancel"
            assert task.cancelled()
        finally:
            await worker.stop()

    async def test_two_workers_never_duplicate(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """Two workers draining one outbox (leases) write each entry exactly once."""
        outcomes = many(200)
        await enqueue(outcomes)
        netbox.inject(count=20, status=503)
        first = make_worker(outbox, netbox, batch_size=10)
        second = make_worker(outbox, netbox, batch_size=10)
        await first.start()
        await second.start()
        try:
            await wait_until(lambda: delivered(outbox, 200), what="200 deliveries")
        finally:
            await first.stop()
            await second.stop()
        assert len(netbox.journal) == 200
        assert entries_per_marker(netbox) == {marker(o.outcome_id): 1 for o in outcomes}

    async def test_outbox_failure_does_not_kill_the_worker(
        self, enqueue: Enqueue, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """A failing ``claim`` is logged and counted; the worker keeps going."""

        class Failing:
            """Delegates to the real outbox, but the first two claims fail."""

            def __init__(self, inner: Outbox) -> None:
                self.inner, self.fails = inner, 2

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

            async def claim(self, *args: Any) -> Any:
                if self.fails:
                    self.fails -= 1
                    raise OSError("database is locked")
                return await self.inner.claim(*args)

        await enqueue([outcome()])
        registry = Registry()
        worker = make_worker(Failing(outbox), netbox, registry)  # type: ignore[arg-type]
        with capture_logs() as logs:
            await worker.start()
            try:
                await wait_until(lambda: delivered(outbox, 1), what="delivery")
            finally:
                await worker.stop()
        assert value(registry, "netcortex_journal_failures_total", reason="outbox") == 2
        assert sum(e["event"] == "journal_outbox_failed" for e in logs) == 2

    async def test_claims_no_more_than_the_rate_allows_within_a_lease(
        self, outbox: Outbox, netbox: FakeNetbox
    ) -> None:
        """At 1 request/s and a 60 s lease, a round claims 20 jobs, not the batch of 50."""
        limits: list[int] = []

        class Recording:
            """Records each claim's limit."""

            def __getattr__(self, name: str) -> Any:
                return getattr(outbox, name)

            async def claim(self, limit: int, *args: Any) -> Any:
                limits.append(limit)
                return await outbox.claim(limit, *args)

        worker = make_worker(
            Recording(),  # type: ignore[arg-type]
            netbox,
            rate_per_second=1.0,
            lease_seconds=60.0,
            batch_size=50,
        )
        async with worker._client:
            await worker.run_once()
        assert limits == [20]

    async def test_backlog_gauges_follow_the_outbox(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """Pending, dead and the oldest pending job's age are exported from ``stats()``."""
        old = datetime.now(UTC) - timedelta(seconds=120)
        await enqueue([outcome(1)], created_at=old)
        netbox.inject(status=503)
        registry = Registry()
        worker = make_worker(outbox, netbox, registry)
        async with worker._client:
            await worker.run_once()
        text = registry.render()
        assert 'netcortex_journal_jobs{state="pending"} 1' in text
        age = registry.get("netcortex_journal_oldest_pending_seconds")
        assert age is not None
        assert 119 <= age.value() <= 600  # type: ignore[union-attr]

    async def test_from_config_builds_a_working_worker(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """``from_config`` wires the client from the section (what ``app`` will call)."""
        await enqueue([outcome()])
        worker = JournalDelivery.from_config(outbox, journal_config(netbox), Registry())
        await worker.start()
        try:
            worker.notify()
            await wait_until(lambda: delivered(outbox, 1), what="delivery")
        finally:
            await worker.stop()

    async def test_start_and_stop_are_idempotent(self, outbox: Outbox, netbox: FakeNetbox) -> None:
        """stop without start, start twice and stop twice are all fine."""
        worker = make_worker(outbox, netbox)
        await worker.stop()
        await worker.start()
        await worker.start()
        assert worker.running
        await worker.stop()
        await worker.stop()
        assert not worker.running


class TestStaleLease:
    async def test_a_worker_whose_lease_ran_out_leaves_the_job_alone(
        self, outbox: MemoryOutbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A failure that ends after the lease expired neither releases nor reschedules
        the job: another worker may hold it by then (its lease must stand)."""
        await enqueue([outcome()])

        class Slow(NetboxJournalClient):
            """The look-up outlives the lease, then fails transiently."""

            async def resolve(self, *args: Any, **kw: Any) -> Assignment:
                await asyncio.sleep(1.4)
                raise JournalRequestError(
                    "NetBox: HTTP 503", retryable=True, reason=MotorErrorReason.UNAVAILABLE,
                    label="server_error", status=503,
                )  # fmt: skip

        registry = Registry()
        timings = {"timeout_seconds": 0.25, "lease_seconds": 1.0}
        config = journal_config(netbox, **timings)
        client = Slow.from_config(config, metrics=registry)
        stale = make_worker(outbox, netbox, registry, client=client, **timings)
        async with client:
            attempt = asyncio.create_task(stale.run_once())
            await asyncio.sleep(1.1)  # the stale worker's lease has run out
            taken = await outbox.claim(10, datetime.now(UTC), 30.0)  # another worker
            assert len(taken) == 1
            assert await attempt == 1
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await outbox.claim(10, later, 30.0) == []  # the other worker's lease holds
        (job,) = await outbox.jobs(JobState.PENDING)
        assert (job.attempts, job.last_error) == (0, "")
        assert value(registry, "netcortex_journal_failures_total", reason="server_error") == 0


class TestUncertainWrite:
    async def test_a_timed_out_write_is_not_repeated_before_it_can_land(
        self, outbox: Outbox, enqueue: Enqueue, netbox: FakeNetbox
    ) -> None:
        """A POST that timed out may still be stored by a slow NetBox: the retry waits
        a lease before it looks for the marker, so it finds the late entry instead of
        writing a second one."""
        made = outcome()
        await enqueue([made])
        netbox.inject(delay=0.6, method="POST")  # stored 0.6 s after it was sent
        worker = make_worker(outbox, netbox, timeout_seconds=0.25, lease_seconds=1.0)
        await worker.start()
        try:
            await wait_until(lambda: delivered(outbox, 1), what="delivery")
        finally:
            await worker.stop()
        # Let the held first POST finish (and be stored) before counting.
        first = next(r.at for r in netbox.requests if r.method == "POST")
        await asyncio.sleep(max(0.0, first + 0.8 - time.monotonic()))
        assert netbox.journal_count(marker(made.outcome_id)) == 1
        assert sum(r.method == "POST" for r in netbox.requests) == 1
