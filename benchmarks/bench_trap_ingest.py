"""UDP → stored outcome: traps per second through the whole engine, loss counted.

An in-process ``Engine`` (memory bus or NATS, SQLite store in a temp dir) receives
distinct SNMPv2c linkDown traps sent from a separate process at a fixed offered
rate. We count what reached the store, what the receiver rejected, and what the
kernel dropped (``/proc/net/snmp`` RcvbufErrors), and read the trap → outcome
latency histogram. The baseline in the same run is a bare asyncio UDP receiver
that only counts datagrams at the same offered rate, so the figure is a ratio to
what this machine's socket path can do at all.

    .venv/bin/python benchmarks/bench_trap_ingest.py [--count N] [--rate R] [--bus memory|nats]

Prints one summary line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import v2c_link_down


def _sender(port: int, count: int, rate: float, ready: mp.Event, go: mp.Event) -> None:  # type: ignore[type-arg]
    packets = [v2c_link_down(i + 1, 1 + (i % 100_000)) for i in range(count)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ready.set()
    go.wait()
    start = time.perf_counter()
    for i, pkt in enumerate(packets):
        due = start + i / rate
        while time.perf_counter() < due:
            pass
        sock.sendto(pkt, ("127.0.0.1", port))
    sock.close()


def rcvbuf_errors() -> int:
    """Kernel UDP RcvbufErrors counter (0 where /proc is not readable)."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return 0
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    if len(udp) < 2:
        return 0
    return int(dict(zip(udp[0][1:], udp[1][1:], strict=True)).get("RcvbufErrors", 0))


def _start_sender(port: int, count: int, rate: float) -> tuple[mp.Process, mp.Event]:  # type: ignore[type-arg]
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_sender, args=(port, count, rate, ready, go), daemon=True)
    proc.start()
    ready.wait(30)
    return proc, go


async def baseline(count: int, rate: float) -> tuple[float, int]:
    """Bare asyncio UDP receiver that only counts; returns (received/s, received)."""
    loop = asyncio.get_running_loop()
    got = 0
    done = asyncio.Event()
    first = last = 0.0

    class Counter(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            nonlocal got, first, last
            got += 1
            last = time.perf_counter()
            if got == 1:
                first = last
            if got == count:
                done.set()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(Counter, sock=sock)
    proc, go = _start_sender(sock.getsockname()[1], count, rate)
    go.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=count / rate + 5)
    transport.close()
    proc.join(10)
    return got / max(last - first, 1e-9), got


async def engine_run(
    count: int, rate: float, bus: str, nats_url: str | None, *, receiver_only: bool = False
) -> dict[str, float]:
    """Run the real engine and offer ``count`` traps at ``rate``/s.

    With ``receiver_only`` every handler is disabled, so what is measured is
    UDP → decode → normalise → publish on the bus (counted as published events).
    """
    from netcortex.app import Engine
    from netcortex.config import load_config

    tmp = tempfile.mkdtemp(prefix="nc-bench-")
    env = {
        "NETCORTEX_BUS__BACKEND": bus,
        "NETCORTEX_STORE__SQLITE_PATH": os.path.join(tmp, "bench.db"),
        "NETCORTEX_TRAP__PORT": "0",
        "NETCORTEX_HTTP__ENABLED": "false",
        "NETCORTEX_LOG__LEVEL": "warning",
        "NETCORTEX_BUS__NAMESPACE": f"bench{os.getpid()}",
    }
    if receiver_only:
        from netcortex.reflex.registry import builtin_registry

        ids = [h.id for h in builtin_registry().all_handlers()]
        env["NETCORTEX_REFLEX__DISABLED"] = "[" + ", ".join(ids) + "]"
    if nats_url:
        env["NETCORTEX_BUS__NATS_URL"] = nats_url
    config = load_config(None, env)
    from netcortex.logs import configure_logging

    configure_logging(config.log)
    engine = Engine(config)
    await engine.start()
    port = engine.bound_addresses["trap"][1]
    kernel_before = rcvbuf_errors()
    proc, go = _start_sender(port, count, rate)
    t0 = time.perf_counter()
    go.set()
    # Count stored rows from the store's own counter (committed rows): querying
    # the store here would put the benchmark's reads on the engine's event loop.
    rows = engine.metrics.get("netcortex_store_rows_total")
    published = engine.metrics.get("netcortex_trap_published_total")
    assert rows is not None
    assert published is not None
    assert hasattr(rows, "value")
    stored = 0
    last_change = time.perf_counter()
    t_done = t0
    while True:
        await asyncio.sleep(0.05)
        n = int(published.total() if receiver_only else rows.value(backend="sqlite"))
        now = time.perf_counter()
        if n != stored:
            stored, last_change, t_done = n, now, now
        if stored >= count or now - last_change > 3.0:
            break
    proc.join(10)
    kernel_drops = rcvbuf_errors() - kernel_before
    lat = engine.metrics.get("netcortex_reflex_event_to_outcome_seconds")
    p50 = p99 = float("nan")
    if lat is not None and hasattr(lat, "quantile"):
        p50 = lat.quantile(0.5, handler="link_down")
        p99 = lat.quantile(0.99, handler="link_down")
    await engine.stop()
    elapsed = max(t_done - t0, 1e-9)
    return {
        "stored": stored,
        "rate": stored / elapsed,
        "loss": 1 - stored / count,
        "kernel_drops": kernel_drops,
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=20_000, help="traps to offer (default 20000)")
    ap.add_argument("--rate", type=float, default=5_000, help="offered traps/s (default 5000)")
    ap.add_argument("--bus", choices=["memory", "nats", "both"], default="both")
    ap.add_argument(
        "--stage",
        choices=["receiver", "outcome", "both"],
        default="both",
        help="receiver: UDP → published event (no handlers); outcome: UDP → stored outcome",
    )
    ap.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = ap.parse_args()
    runner_factory = None
    if not args.no_uvloop:
        try:
            import uvloop

            runner_factory = uvloop.new_event_loop
        except ImportError:
            pass
    loop_name = "uvloop" if runner_factory else "asyncio"

    def run(coro):  # type: ignore[no-untyped-def]
        with asyncio.Runner(loop_factory=runner_factory) as r:
            return r.run(coro)

    base_rate, base_got = run(baseline(args.count, args.rate))
    print(
        f"baseline count-only receiver [{loop_name}]: offered {args.count} at {args.rate:.0f}/s, "
        f"received {base_got} ({base_rate:,.0f}/s)"
    )
    buses = ["memory", "nats"] if args.bus == "both" else [args.bus]
    for bus in buses:
        nats_url = None
        server = None
        if bus == "nats":
            from tests.servers import NatsServer  # the test suite's real-server helper

            server = NatsServer()
            nats_url = server.start()
        stages = ["receiver", "outcome"] if args.stage == "both" else [args.stage]
        try:
            for stage in stages:
                r = run(
                    engine_run(
                        args.count, args.rate, bus, nats_url, receiver_only=stage == "receiver"
                    )
                )
                what = "published event" if stage == "receiver" else "stored outcome (sqlite)"
                line = (
                    f"trap→{what} [{bus} bus, {loop_name}]: offered {args.count} at "
                    f"{args.rate:.0f}/s, done {r['stored']:.0f} ({r['rate']:,.0f}/s, "
                    f"loss {r['loss']:.1%}, kernel drops {r['kernel_drops']:.0f})"
                )
                if stage == "outcome":
                    # Histogram bucket upper bounds, so read them as "at most".
                    line += f", trap→outcome p50 ≤ {r['p50_ms']:.2f} ms, p99 ≤ {r['p99_ms']:.2f} ms"
                print(f"{line}; {r['stored'] / max(base_got, 1):.2f}x the count-only baseline")
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    main()
