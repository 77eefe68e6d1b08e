"""Bus benchmark: publish→subscriber throughput and publish→handler latency, memory vs NATS.

Usage::

    .venv/bin/python benchmarks/bench_bus.py [--loop uvloop|asyncio] [--count N]

200-byte payloads. For each backend:

* throughput: ``count`` messages published on one subject, one subscriber task
  taking and acking them; messages/s from the first publish to the last receipt.
  The memory bus is published from one task; the NATS bus with a window of
  concurrent publishes (the engine's pipelined shape, ``max_inflight``), and also
  from one task awaiting each ack (``seq``) for reference;
* latency: one message at a time; the time from calling ``publish`` to the
  subscriber task holding the message (p50 / p99 over ``--latency-count``).

NATS runs against its own ``nats-server -js`` (file storage, temp dir, free port)
started through ``tests/servers.py``. Prints one summary line per backend and the
memory/NATS ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import NatsServer

from netcortex.config import BusConfig
from netcortex.contracts.bus import EventBus
from netcortex.thalamus import InMemoryEventBus, NatsEventBus

SUBJECT = "sensory.snmp.trap.link_down.10%2E0%2E0%2E1.Gi1/0/3"
PAYLOAD = b"x" * 200
PHASE_LIMIT = 60.0  # seconds any one phase may take


async def throughput(bus: EventBus, count: int, window: int) -> float:
    """Messages/s through publish → one subscriber (ack each)."""
    sub = await bus.subscribe("sensory.>", durable=f"tp{uuid.uuid4().hex[:8]}")

    async def consume() -> None:
        for _ in range(count):
            msg = await sub.next()
            await msg.ack()

    consumer = asyncio.create_task(consume())
    started = time.perf_counter()
    async with asyncio.timeout(PHASE_LIMIT):
        if window <= 1:
            for _ in range(count):
                await bus.publish(SUBJECT, PAYLOAD)
        else:
            sent = 0
            while sent < count:
                n = min(window, count - sent)
                await asyncio.gather(*(bus.publish(SUBJECT, PAYLOAD) for _ in range(n)))
                sent += n
        await consumer
    elapsed = time.perf_counter() - started
    await sub.close()
    return count / elapsed


async def latency(bus: EventBus, count: int) -> tuple[float, float]:
    """p50 and p99 (µs) from publish() to the subscriber task holding the message."""
    sub = await bus.subscribe("sensory.>")
    samples: list[float] = []
    received = asyncio.Event()
    sent_at = 0.0

    async def consume() -> None:
        for _ in range(count):
            msg = await sub.next()
            samples.append(time.perf_counter() - sent_at)
            await msg.ack()
            received.set()

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(PHASE_LIMIT):
        for _ in range(count):
            received.clear()
            sent_at = time.perf_counter()
            await bus.publish(SUBJECT, PAYLOAD)
            await received.wait()
        await consumer
    await sub.close()
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e6, q[98] * 1e6


async def bench_memory(count: int, lat_count: int) -> dict[str, float]:
    async with InMemoryEventBus(BusConfig(queue_size=10_000)) as bus:
        await throughput(bus, min(count, 20_000), 1)  # warm-up
        rate = await throughput(bus, count, 1)
        p50, p99 = await latency(bus, lat_count)
    return {"rate": rate, "p50": p50, "p99": p99}


async def bench_nats(url: str, count: int, lat_count: int, window: int) -> dict[str, float]:
    config = BusConfig(backend="nats", nats_url=url, namespace="bench" + uuid.uuid4().hex[:6])
    async with NatsEventBus(config) as bus:
        await throughput(bus, 2_000, window)  # warm-up
        rate = await throughput(bus, count, window)
        seq = await throughput(bus, max(1, count // 4), 1)
        p50, p99 = await latency(bus, lat_count)
    return {"rate": rate, "seq": seq, "p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--count", type=int, default=200_000, help="memory bus messages")
    parser.add_argument("--nats-count", type=int, default=20_000)
    parser.add_argument("--latency-count", type=int, default=2_000)
    parser.add_argument("--window", type=int, default=1_000, help="concurrent NATS publishes")
    args = parser.parse_args()

    loop_name = "asyncio"
    if args.loop == "uvloop":
        try:
            import uvloop

            uvloop.install()
            loop_name = "uvloop"
        except ImportError:
            print("uvloop not installed; using the asyncio loop", file=sys.stderr)

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    mem = asyncio.run(bench_memory(args.count, args.latency_count * 5))
    print(
        f"bus=memory loop={loop_name} payload=200B msgs={args.count} "
        f"throughput={mem['rate']:,.0f} msg/s latency_p50={mem['p50']:.1f}us "
        f"latency_p99={mem['p99']:.1f}us"
    )
    with NatsServer() as server:
        nat = asyncio.run(bench_nats(server.url, args.nats_count, args.latency_count, args.window))
    print(
        f"bus=nats   loop={loop_name} payload=200B msgs={args.nats_count} storage=file "
        f"throughput={nat['rate']:,.0f} msg/s (window {args.window}; one publisher awaiting "
        f"each ack {nat['seq']:,.0f} msg/s) latency_p50={nat['p50']:.1f}us "
        f"latency_p99={nat['p99']:.1f}us"
    )
    print(
        f"ratio memory/nats: throughput {mem['rate'] / nat['rate']:.1f}x, "
        f"latency_p50 {nat['p50'] / mem['p50']:.1f}x lower on memory"
    )


if __name__ == "__main__":
    main()
