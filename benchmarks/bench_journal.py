"""NetBox journal (issue 7): outcome → journal entry latency, and the outbox's enqueue cost.

Goal (issue 7, "Done when"): with a healthy NetBox test server, p99 outcome →
journal entry < 2 s, and the outbox enqueue < 50 ms.

    .venv/bin/python benchmarks/bench_journal.py [--count 200] [--rate 20]
        [--netbox-rate 100] [--enqueue 2000] [--commits 200]
        [--dsn postgresql://postgres@127.0.0.1:5432/test]

The real pipeline pieces, in one process: an outcome store (SQLite in a temporary
directory; PostgreSQL too with ``--dsn``, in a throwaway schema) with the
engine's ``JournalHook`` (the journal policy decides in ``record()``, the job is
written in the outcome's transaction, the commit wakes the worker), the
``JournalDelivery`` worker over the store's outbox, and ``NetboxJournalClient``
over real HTTP to ``tests/fake_netbox.py``'s ``FakeNetbox`` (the fixture
inventory; every request schema-validated against NetBox's 4 MB OpenAPI
document, which a real NetBox does not do but which costs the fake a few ms).

1. **Latency**: ``--count`` ``high`` link-down outcomes on the fixture's
   interfaces, recorded at ``--rate`` per second (steady, not a burst), with
   ``journal.rate_per_second`` = ``--netbox-rate`` (the default config's 5 req/s
   would cap a job — a marker search and a create, plus cached look-ups — near
   2.5 jobs/s). Per outcome: ``recorded_at`` → the fake NetBox stored the POST
   (the entry's ``created`` stamp, same clock), matched by the idempotency
   marker; p50 / p99 / max. Every outcome must appear exactly once.
2. **Enqueue**: ``store.record()`` on the event loop with the hook vs without
   (``--enqueue`` outcomes each, same run, µs per call and the ratio), and the
   commit latency ``record()`` + ``flush()`` of one outcome with its job vs
   without (``--commits`` times each; p50 / p99): what an outcome waits for its
   job to be durable. The goal's "enqueue" is this commit latency.

Prints one line per measurement, then a one-line summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_netbox import FakeNetbox, running_fake_netbox

from netcortex.app import make_outbox, make_store
from netcortex.config import JournalConfig, StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeStore
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.memory.episodic.outbox import JournalHook
from netcortex.metrics import Registry
from netcortex.motor import JournalDelivery, JournalPolicy, marker
from netcortex.testing import make_event

GOAL_P99_S = 2.0
GOAL_ENQUEUE_MS = 50.0
#: Devices and interfaces of the shared fixture inventory (NetBox knows them).
PLACES = [
    ("sw1-north", "GigabitEthernet1/0/1"),
    ("sw1-north", "GigabitEthernet1/0/2"),
    ("sw1-north", "GigabitEthernet1/0/3"),
    ("sw2-north", "GigabitEthernet1/0/1"),
    ("r1-north", "GigabitEthernet0/0/1"),
]


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def outcome(run: str, n: int) -> ReflexOutcome:
    """A fresh ``high`` link-down outcome on a fixture interface, recorded now."""
    device, interface = PLACES[n % len(PLACES)]
    event = make_event(
        "link_down", device=device, interface=interface, event_id=f"01B{run}{n:012d}"
    )
    made = ReflexOutcome.for_event(
        "link_down",
        event,
        severity=Severity.HIGH,
        summary=f"Interface {interface} on {device} went down",
        site="dc-north",
        trace={"corroboration": 1, "interface": interface},
    )
    return replace(made, recorded_at=datetime.now(UTC))


def _created(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["created"]).replace("Z", "+00:00"))


@contextlib.asynccontextmanager
async def store_at(config: StoreConfig, hook: JournalHook | None) -> AsyncIterator[OutcomeStore]:
    store = make_store(config, Registry(), journal=hook)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def latency(
    name: str, config: StoreConfig, netbox: FakeNetbox, args: argparse.Namespace
) -> tuple[float, float]:
    """Outcome → journal entry latency over real HTTP; returns (p50, p99) seconds."""
    journal = JournalConfig.model_validate(
        {
            "enabled": True,
            "netbox_url": netbox.url,
            "netbox_token": netbox.token,
            "rate_per_second": args.netbox_rate,
        }
    )
    outbox = make_outbox(config)
    delivery = JournalDelivery.from_config(outbox, journal, Registry())
    # As the engine wires it (Engine._journal_committed): a commit wakes the worker.
    hook = JournalHook(
        wants=JournalPolicy.from_config(journal).wants, committed=lambda _jobs: delivery.notify()
    )
    run = uuid.uuid4().hex[:8].upper()
    made: list[ReflexOutcome] = []
    async with store_at(config, hook) as store:
        await outbox.start()
        await delivery.start()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n in range(args.count):
                await asyncio.sleep(max(0.0, start + n / args.rate - loop.time()))
                o = outcome(run, n)
                made.append(o)
                await store.record(o)
            await store.flush()  # every job committed before "nothing pending" means done
            async with asyncio.timeout(args.count / args.rate + 120):
                while (await outbox.stats()).pending:  # noqa: ASYNC110 - polls the database
                    await asyncio.sleep(0.05)
            stats = await outbox.stats()
        finally:
            await delivery.stop()
            await outbox.close()
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in netbox.journal:
        for line in entry["comments"].splitlines():
            entries.setdefault(line.strip(), []).append(entry)
    lat = []
    for o in made:
        found = entries.get(marker(o.outcome_id), [])
        assert len(found) == 1, f"{o.outcome_id}: {len(found)} entries (want exactly 1)"
        lat.append((_created(found[0]) - o.recorded_at).total_seconds())
    assert stats.dead == 0, f"{stats.dead} jobs dead-lettered"
    if args.verbose:
        print("latencies (s):", " ".join(f"{x:.2f}" for x in lat))
    p50, p99 = statistics.median(lat), pct(lat, 99)
    print(
        f"{name:<9} outcome->entry  {args.count} outcomes at {args.rate:g}/s, netbox "
        f"{args.netbox_rate:g} req/s: p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
        f"max {max(lat) * 1000:7.1f} ms  (goal p99 < {GOAL_P99_S:g} s: "
        f"{'met' if p99 < GOAL_P99_S else 'MISSED'})"
    )
    return p50, p99


async def enqueue(
    name: str, config: Callable[[str], StoreConfig], args: argparse.Namespace
) -> float:
    """record() cost with and without the hook, and record()+flush() commit latency."""
    policy = JournalPolicy.from_config(JournalConfig())
    per_call: dict[str, float] = {}
    commits: dict[str, list[float]] = {}
    for label, hook in (("without", None), ("with", JournalHook(wants=policy.wants))):
        run = uuid.uuid4().hex[:8].upper()
        async with store_at(config(label), hook) as store:
            warm = [outcome(run + "W", n) for n in range(min(200, args.enqueue))]
            for o in warm:  # warm-up (first-call costs), not timed
                await store.record(o)
            await store.flush()
            batch = [outcome(run, n) for n in range(args.enqueue)]
            t0 = time.perf_counter()
            for o in batch:
                await store.record(o)
            per_call[label] = (time.perf_counter() - t0) / len(batch) * 1e6
            await store.flush()
            times = []
            for n in range(args.commits):
                o = outcome(run, args.enqueue + n)
                t0 = time.perf_counter()
                await store.record(o)
                await store.flush()
                times.append((time.perf_counter() - t0) * 1000)
            commits[label] = times
    ratio = per_call["with"] / per_call["without"]
    print(
        f"{name:<9} record()        without hook {per_call['without']:6.1f} us/call, with "
        f"hook {per_call['with']:6.1f} us/call (x{ratio:.2f}, {args.enqueue} calls each)"
    )
    for label in ("without", "with"):
        t = commits[label]
        print(
            f"{name:<9} record+flush    {label:<7} job: p50 {statistics.median(t):6.2f} ms  "
            f"p99 {pct(t, 99):6.2f} ms  ({args.commits} single-outcome commits)"
        )
    p99 = pct(commits["with"], 99)
    print(
        f"{name:<9} enqueue         p99 {p99:.2f} ms (goal < {GOAL_ENQUEUE_MS:g} ms: "
        f"{'met' if p99 < GOAL_ENQUEUE_MS else 'MISSED'})"
    )
    return p99


async def main(args: argparse.Namespace) -> None:
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        backends: list[tuple[str, Callable[[str], StoreConfig], Callable[[], Any]]] = [
            (
                "sqlite",
                lambda label: StoreConfig(sqlite_path=Path(tmp) / f"{label}.db"),
                lambda: None,
            )
        ]
        schemas: list[str] = []
        if args.dsn:

            def pg(label: str) -> StoreConfig:
                schema = f"bench_journal_{label}_{uuid.uuid4().hex[:8]}"
                schemas.append(schema)
                return StoreConfig(
                    backend="postgres", postgres_dsn=args.dsn, postgres_schema=schema
                )

            async def drop() -> None:
                conn = await asyncpg.connect(args.dsn)
                try:
                    for schema in schemas:
                        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                finally:
                    await conn.close()

            backends.append(("postgres", pg, drop))
        for name, config, cleanup in backends:
            try:
                with running_fake_netbox() as netbox:
                    p50, p99 = await latency(name, config("latency"), netbox, args)
                enq = await enqueue(name, config, args)
            finally:
                done = cleanup()
                if done is not None:
                    await done
            summary.append(
                f"{name}: p50 {p50 * 1000:.0f} ms / p99 {p99 * 1000:.0f} ms, "
                f"enqueue p99 {enq:.1f} ms"
            )
    print(
        f"journal: {'; '.join(summary)} (goals: p99 < {GOAL_P99_S:g} s, "
        f"enqueue < {GOAL_ENQUEUE_MS:g} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="outcomes for the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="outcomes recorded per second")
    parser.add_argument(
        "--netbox-rate", type=float, default=100.0, help="journal.rate_per_second (req/s)"
    )
    parser.add_argument("--enqueue", type=int, default=2000, help="record() calls per variant")
    parser.add_argument("--commits", type=int, default=200, help="record+flush per variant")
    parser.add_argument("--dsn", help="also PostgreSQL (throwaway schemas, dropped after)")
    parser.add_argument("--verbose", action="store_true", help="print every latency")
    ns = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(
        f"journal benchmark: count={ns.count} rate={ns.rate:g}/s netbox-rate={ns.netbox_rate:g} "
        f"enqueue={ns.enqueue} commits={ns.commits} postgres={'yes' if ns.dsn else 'no'}"
    )
    asyncio.run(main(ns))
