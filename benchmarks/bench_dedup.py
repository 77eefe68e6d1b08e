"""Dedup benchmark: ``seen()`` calls/s, memory vs JetStream KV, new keys and duplicates.

Usage::

    .venv/bin/python benchmarks/bench_dedup.py [--loop uvloop|asyncio] [--count N] [--window W]

For each backend, ``count`` calls of two shapes:

* ``new``: every call a different key (each one a create);
* ``dup``: every call the same key (a storm: one create, then increments).

Each shape runs sequentially (one caller awaiting each answer: the latency
bound) and, for JetStream, also as ``window`` concurrent callers (how the
reflex runner calls it under load; concurrent duplicates of one key are
coalesced into one compare-and-set). JetStream runs against its own
``nats-server -js`` (file storage, temp dir, free port) started through
``tests/servers.py``. One line per backend and shape.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import NatsServer

from netcortex.contracts.memory import DedupStore
from netcortex.memory.episodic import InMemoryDedupStore, JetStreamDedupStore

WINDOW_S = 300.0
PHASE_LIMIT = 120.0  # seconds any one phase may take


async def run(
    store: DedupStore, count: int, *, same_key: bool, concurrency: int
) -> tuple[float, float]:
    """Calls/s and CPU µs per call (this process) for ``count`` calls of one shape;
    asserts the answers are right."""
    prefix = uuid.uuid4().hex[:8]

    def key(i: int) -> str:
        return f"link_down|{prefix}|Gi1/0/1" if same_key else f"link_down|{prefix}|Gi{i}"

    firsts = 0
    cpu0 = time.process_time()
    started = time.perf_counter()
    async with asyncio.timeout(PHASE_LIMIT):
        if concurrency <= 1:
            for i in range(count):
                firsts += (await store.seen(key(i), WINDOW_S, f"e{i}")).first
        else:
            for lo in range(0, count, concurrency):
                hi = min(lo + concurrency, count)
                rs = await asyncio.gather(
                    *(store.seen(key(i), WINDOW_S, f"e{i}") for i in range(lo, hi))
                )
                firsts += sum(r.first for r in rs)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    assert firsts == (1 if same_key else count), firsts
    return count / elapsed, cpu / count * 1e6


async def main(args: argparse.Namespace) -> None:
    n = args.count
    memory = InMemoryDedupStore(max_keys=max(n * 2, 100_000))
    for shape, same in (("new", False), ("dup", True)):
        rate, cpu = await run(memory, n * 10, same_key=same, concurrency=1)
        print(f"memory     {shape}  sequential        {rate:>12,.0f} seen/s  {cpu:6.1f} µs CPU")
    with NatsServer() as server:
        js = JetStreamDedupStore(nats_url=server.url, namespace="bench" + uuid.uuid4().hex[:6])
        await js.start()
        try:
            for shape, same in (("new", False), ("dup", True)):
                rate, cpu = await run(js, n, same_key=same, concurrency=1)
                print(
                    f"jetstream  {shape}  sequential        {rate:>12,.0f} seen/s  "
                    f"{cpu:6.1f} µs CPU"
                )
                rate, cpu = await run(js, n, same_key=same, concurrency=args.window)
                print(
                    f"jetstream  {shape}  {args.window:>4} concurrent   {rate:>12,.0f} seen/s  "
                    f"{cpu:6.1f} µs CPU"
                )
        finally:
            await js.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--count", type=int, default=10_000, help="calls per JetStream phase")
    parser.add_argument("--window", type=int, default=500, help="concurrent callers")
    ns = parser.parse_args()
    # as in production: debug events (one per new fact) are filtered, not printed
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    print(f"dedup benchmark, loop={ns.loop}, count={ns.count} (memory: 10x)")
    if ns.loop == "uvloop":
        import uvloop

        uvloop.run(main(ns))
    else:
        asyncio.run(main(ns))
