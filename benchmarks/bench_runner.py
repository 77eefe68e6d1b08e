"""Reflex runner throughput and latency: memory bus → runner → sinks (log, SQLite, bus).

The built-in handlers run on an ``InMemoryEventBus`` with the real pipeline
(``build_pipeline``: JSON log line to /dev/null, ``SqliteOutcomeStore`` in a temp
directory, outcome published on ``reflex.>``). Two phases:

* throughput: ``--count`` distinct linkDown events are published as fast as the
  bus accepts them; the clock stops when the last outcome has been published on
  ``reflex.>`` *and* the store has flushed it to disk;
* latency: ``--samples`` events are published one at a time; each sample is
  publish → its outcome arriving on ``reflex.>`` (all sinks done).

    .venv/bin/python benchmarks/bench_runner.py [--count 20000] [--samples 2000]
        [--targets N] [--log-level info|warning] [--no-uvloop]

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

from netcortex.config import BusConfig, LogConfig, StoreConfig
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


async def run(count: int, samples: int, targets: int, loop_name: str) -> str:
    metrics = Registry()
    with tempfile.TemporaryDirectory() as tmp:
        bus = InMemoryEventBus(BusConfig(queue_size=10_000), metrics)
        store = SqliteOutcomeStore(StoreConfig(sqlite_path=Path(tmp) / "o.db"), metrics)
        async with bus, store:
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
            for subject, data, msg_id in events:
                await bus.publish(subject, data, msg_id=msg_id)
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
    lat.sort()
    batches = metrics.histogram("netcortex_store_batch_seconds", "", ("backend",))
    n_batches = batches.count(backend="sqlite")
    return (
        f"bench_runner loop={loop_name} handlers={len(registry)} "
        f"throughput={count / elapsed:,.0f} events/s ({count} link_down, memory bus -> runner -> "
        f"log+sqlite+bus, {elapsed:.2f}s, targets={targets or 'all distinct'}) "
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
        line = runner(run(args.count, args.samples, args.targets, loop_name))
    print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
