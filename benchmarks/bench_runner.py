"""Reflex runner throughput and latency: bus → runner → sinks (log, SQLite, bus).

The built-in handlers run on the chosen bus (``--bus memory``: ``InMemoryEventBus``;
``--bus nats``: ``NatsEventBus`` on a private JetStream ``nats-server`` started
with ``tests/servers.py``) with the real pipeline (``build_pipeline``: JSON log
line to /dev/null, ``SqliteOutcomeStore`` in a temp directory, outcome published
on ``reflex.>``). Two phases:

* throughput: ``--count`` distinct linkDown events are published as fast as the
  bus accepts them (memory: one after another; NATS: up to ``--window``
  publishes in flight, as the trap receiver does, since awaiting each JetStream
  ack in turn would measure the publisher, not the runner); the clock stops
  when the last outcome has been published on ``reflex.>`` *and* the store has
  flushed it to disk;
* latency: ``--samples`` events are published one at a time; each sample is
  publish → its outcome arriving on ``reflex.>`` (all sinks done).

    .venv/bin/python benchmarks/bench_runner.py [--bus memory|nats] [--count 20000]
        [--samples 2000] [--targets N] [--log-level info|warning] [--window 256]
        [--no-uvloop]

``--targets`` bounds the distinct ``device|interface`` targets (default: every
event has its own, the worst case for subject caches); ``--log-level warning``
leaves out the per-outcome INFO line to show what logging costs.

Prints one summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.servers

from netcortex.config import BusConfig, LogConfig, StoreConfig
from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_event
from netcortex.contracts.memory import OutcomeQuery
from netcortex.logs import configure_logging
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.metrics import Registry
from netcortex.reflex.pipeline import build_pipeline
from netcortex.reflex.registry import builtin_registry
from netcortex.reflex.runner import ReflexRunner
from netcortex.testing import make_event
from netcortex.thalamus.memory import InMemoryEventBus
from netcortex.thalamus.nats import NatsEventBus


def _events(count: int, prefix: str, targets: int) -> list[tuple[str, bytes, str]]:
    out = []
    for n in range(count):
        i = n % targets if targets else n
        ev = make_event(
            "link_down",
            device=f"10.{i // 12288 % 256}.{i // 48 % 256}.1",
            interface=f"{prefix}{i % 48}",
            payload={"ifIndex": i % 48, "ifName": f"{prefix}{i % 48}", "ifOperStatus": "down"},
        )
        out.append((ev.subject, encode_event(ev), ev.id))
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _publish_all(bus: EventBus, events: list[tuple[str, bytes, str]], window: int) -> None:
    """Publish in order; with ``window`` > 1 keep up to that many publishes in flight."""
    if window <= 1:
        for subject, data, msg_id in events:
            await bus.publish(subject, data, msg_id=msg_id)
        return
    room = asyncio.Semaphore(window)
    tasks: set[asyncio.Task[None]] = set()

    async def one(subject: str, data: bytes, msg_id: str) -> None:
        try:
            await bus.publish(subject, data, msg_id=msg_id)
        finally:
            room.release()

    for event in events:
        await room.acquire()
        task = asyncio.create_task(one(*event))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def run(
    count: int, samples: int, targets: int, loop_name: str, bus_name: str, window: int
) -> str:
    metrics = Registry()
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        bus: EventBus
        if bus_name == "nats":
            from tests.servers import NatsServer  # the test suite's real-server helper

            server = NatsServer()  # own store dir, removed by cleanup()
            url = await asyncio.to_thread(server.start)
            bus = NatsEventBus(
                BusConfig(backend="nats", nats_url=url, namespace=f"benchrunner{os.getpid()}"),
                metrics,
            )
        else:
            bus = InMemoryEventBus(BusConfig(queue_size=10_000), metrics)
            window = 1
        try:
            line = await _measure(
                bus, bus_name, metrics, Path(tmp), count, samples, targets, window
            )
        finally:
            if server is not None:
                await asyncio.to_thread(server.cleanup)
    return (
        f"bench_runner loop={loop_name} bus={bus_name} "
        + line
        + (f" publish_window={window}" if window > 1 else "")
    )


async def _measure(
    bus: EventBus,
    bus_name: str,
    metrics: Registry,
    tmp: Path,
    count: int,
    samples: int,
    targets: int,
    window: int,
) -> str:
    store = SqliteOutcomeStore(StoreConfig(sqlite_path=tmp / "o.db"), metrics)
    await bus.start()  # the EventBus Protocol has start/close, not ``async with``
    try:
        async with store:
            registry = builtin_registry()
            runner = ReflexRunner(registry, bus, build_pipeline(store=store, bus=bus), metrics)
            outcomes = await bus.subscribe("reflex.>")
            await runner.start()

            # ---- throughput
            events = _events(count, "Gi1/0/", targets)
            received = 0
            done = asyncio.Event()

            async def drain() -> None:
                nonlocal received
                while received < count:
                    msg = await outcomes.next()
                    await msg.ack()
                    received += 1
                done.set()

            drainer = asyncio.create_task(drain())
            started = time.perf_counter()
            await _publish_all(bus, events, window)
            await asyncio.wait_for(done.wait(), 120)
            await store.flush()
            elapsed = time.perf_counter() - started
            await drainer

            # ---- latency, one event at a time
            lat: list[float] = []
            for subject, data, msg_id in _events(samples, "Te1/1/", targets):
                t0 = time.perf_counter()
                await bus.publish(subject, data, msg_id=msg_id)
                msg = await asyncio.wait_for(outcomes.next(), 10)
                lat.append(time.perf_counter() - t0)
                await msg.ack()

            await runner.stop()
            await store.flush()
            stored = len(await store.query(OutcomeQuery(limit=count + samples + 10)))
    finally:
        await bus.close()
    lat.sort()
    batches = metrics.histogram("netcortex_store_batch_seconds", "", ("backend",))
    n_batches = batches.count(backend="sqlite")
    return (
        f"handlers={len(registry)} "
        f"throughput={count / elapsed:,.0f} events/s ({count} link_down, "
        f"{bus_name} bus -> runner -> log+sqlite+bus, {elapsed:.2f}s, "
        f"targets={targets or 'all distinct'}) "
        f"latency publish->outcome "
        f"p50={_pct(lat, 0.50) * 1e6:.0f}us p99={_pct(lat, 0.99) * 1e6:.0f}us "
        f"mean={statistics.fmean(lat) * 1e6:.0f}us (n={samples}) "
        f"stored={stored} sqlite_batches={n_batches} rows/batch={stored / max(n_batches, 1):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument(
        "--targets", type=int, default=0, help="distinct device|interface targets (0: all)"
    )
    parser.add_argument("--log-level", default="info", choices=["info", "warning"])
    parser.add_argument("--bus", default="memory", choices=["memory", "nats"])
    parser.add_argument(
        "--window", type=int, default=256, help="NATS only: publishes in flight (default 256)"
    )
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        configure_logging(LogConfig(level=args.log_level, format="json"), stream=devnull)
        loop_name, runner = "asyncio", asyncio.run
        if not args.no_uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                loop_name, runner = "uvloop", uvloop.run
        line = runner(run(args.count, args.samples, args.targets, loop_name, args.bus, args.window))
    print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
