"""HTTP → published event: Meraki webhooks per second and request → published latency.

An in-process ``Engine`` (memory bus or NATS, SQLite in a temp dir, the fixture
shared secret, no inventory, every handler off unless ``--handlers``) serves
HTTP on 127.0.0.1 port 0. A load generator in a separate process (raw asyncio
HTTP/1.1 over keep-alive connections, ``--connections`` of them, one request in
flight on each) POSTs the eight shared Meraki fixture bodies round-robin to
``/webhooks/meraki``, each with a unique ``alertId`` and a fresh ``sentAt``, for
``--duration`` seconds. Three loads, one after the other, on the same server:

1. ``GET /api/v1/healthz`` as fast as the connections go — the baseline: what
   this machine's HTTP path (uvicorn + FastAPI, loopback) does at all;
2. webhooks as fast as the connections go — the throughput figure (at
   saturation the latency is the queue: connections / throughput);
3. webhooks offered at ``--rate`` per second (default 2,000, the issue's goal),
   paced per connection, latency counted from when each request was due — the
   latency figure at the goal's rate.

For each: requests/s answered, answers by status (for webhooks anything but 202
is an error; transport errors apart), client-side latency p50 / p99 / max; for
the webhook loads also the server side, request → published event: the
receiver's histogram ``netcortex_webhook_publish_latency_seconds`` as served on
``/api/v1/metrics`` (bucket upper bounds, so read "at most"), and exact
percentiles from a subscriber on ``sensory.meraki.>`` in the engine's process
(the event's ``received_at`` → the subscriber holds it, so bus delivery is
included; ``--no-observer`` leaves it out). Goal (issue 4): >= 2,000 webhooks/s
with p99 < 10 ms from request to published event, one process.

    .venv/bin/python benchmarks/bench_webhook.py [--duration S] [--connections N]
        [--rate R] [--bus memory|nats] [--handlers] [--no-uvloop]

Prints a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import load_json_fixture
from tests.e2e.harness import API_TOKEN, MERAKI_FIXTURES, MERAKI_SECRET

HOST = "127.0.0.1"
WEBHOOK_PATH = "/webhooks/meraki"
HEALTH_PATH = "/api/v1/healthz"
LATENCY_METRIC = "netcortex_webhook_publish_latency_seconds"
GOAL_RPS = 2000.0
GOAL_P99_MS = 10.0

# -- load generator (runs in its own process) ------------------------------------


def _templates() -> list[bytes]:
    """Each fixture body as JSON with placeholders for ``alertId`` and ``sentAt``."""
    out = []
    for name in MERAKI_FIXTURES:
        body = load_json_fixture("meraki", f"{name}.json")
        body["alertId"] = "@@ALERT@@"
        body["sentAt"] = "@@SENT@@"
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def _request_factory(kind: str, port: int, run: int, conn: int) -> Callable[[int], bytes]:
    """``make(i)`` → the bytes of request ``i`` on connection ``conn`` of load ``run``
    (alert ids unique across all three)."""
    host = f"Host: {HOST}:{port}\r\n".encode()
    if kind == "healthz":
        raw = b"GET " + HEALTH_PATH.encode() + b" HTTP/1.1\r\n" + host + b"\r\n"
        return lambda i: raw
    templates = _templates()
    head = b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1\r\n" + host
    head += b"Content-Type: application/json\r\n"

    def make(i: int) -> bytes:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        alert = f"{run:02d}{conn:04d}{i:012d}".encode()
        body = templates[i % len(templates)].replace(b"@@ALERT@@", alert)
        body = body.replace(b"@@SENT@@", now)
        return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    return make


class _Tally:
    """What one load saw: latencies, answers by status, transport errors by type."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}

    def error(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1


async def _connection(
    port: int,
    make: Callable[[int], bytes],
    first_due: float,
    stop_at: float,
    interval: float,
    tally: _Tally,
) -> None:
    """One keep-alive connection, one request in flight, until ``stop_at``.

    ``interval`` 0: the next request as soon as the answer is read (closed loop).
    Otherwise request ``i`` is due at ``first_due + i * interval`` and its latency
    is counted from when it was due, not from when it could be sent, so a slow
    answer that delays the next request shows in that one's latency too (no
    coordinated omission).
    """
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        tally.error(exc)
        return
    i = 0
    try:
        while time.perf_counter() < stop_at:
            if interval:
                due = first_due + i * interval
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                t0 = due
            else:
                t0 = time.perf_counter()
            writer.write(make(i))
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not handled by this client")
            if length:
                await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - t0)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                break
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        tally.error(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _load(
    kind: str, port: int, connections: int, duration: float, rate: float, run: int
) -> dict[str, Any]:
    """Run one load; ``rate`` 0 = closed loop, else offered requests/s (paced)."""
    tally = _Tally()
    # Paced: each connection offers rate/connections per second, staggered evenly.
    interval = connections / rate if rate > 0 else 0.0
    t0 = time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(
        *(
            _connection(
                port,
                _request_factory(kind, port, run, n),
                t0 + n * interval / connections,
                stop_at,
                interval,
                tally,
            )
            for n in range(connections)
        )
    )
    elapsed = time.perf_counter() - t0
    lat = sorted(tally.latencies)
    return {
        "answered": len(lat),
        "rps": len(lat) / max(elapsed, 1e-9),
        "statuses": tally.statuses,
        "errors": tally.errors,
        "p50": _pct(lat, 0.50),
        "p99": _pct(lat, 0.99),
        "max": lat[-1] if lat else math.nan,
    }


def _generator(args: tuple[Any, ...], uvloop_ok: bool, out: Any) -> None:
    """Process entry point: run ``_load(*args)`` and put its result on ``out``."""
    factory = None
    if uvloop_ok:
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        out.put(runner.run(_load(*args)))


async def _run_load(args: tuple[Any, ...], uvloop_ok: bool, timeout: float) -> dict[str, Any]:
    """Run the generator in a spawned process without blocking the engine's loop."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_generator, args=(args, uvloop_ok, out), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = await loop.run_in_executor(None, out.get, True, timeout)
    await loop.run_in_executor(None, proc.join, 10)
    return result


# -- the engine (this process) ----------------------------------------------------


class _Observer:
    """Subscriber on ``sensory.meraki.>``: exact received_at → delivered latencies."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, bus: Any) -> None:
        from netcortex.contracts.codec import decode_event

        sub = await bus.subscribe("sensory.meraki.>")

        async def consume() -> None:
            async for msg in sub:
                now = time.time()
                event = decode_event(msg.data)
                self.latencies.append(now - event.received_at.timestamp())
                await msg.ack()

        self._task = asyncio.create_task(consume(), name="bench-observer")

    def take(self) -> list[float]:
        """The latencies seen since the last call (sorted)."""
        taken, self.latencies = self.latencies, []
        return sorted(taken)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name``, all its series added up.

    ``metrics_text`` is what the engine serves on ``/api/v1/metrics``; parsed with
    prometheus_client's reference parser.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def _bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of the observations in between."""
    delta = {le: after[le] - before.get(le, 0.0) for le in after}
    total = delta.get(math.inf, 0.0)
    if not total:
        return math.nan
    return next(le for le in sorted(delta) if delta[le] >= q * total)


async def bench(args: argparse.Namespace, uvloop_ok: bool) -> list[dict[str, Any]]:
    """Start the engine, run the three loads against it, stop; one result per load."""
    from netcortex.app import Engine
    from netcortex.config import load_config
    from netcortex.logs import configure_logging

    tmp = tempfile.mkdtemp(prefix="nc-bench-webhook-")
    env = {
        "NETCORTEX_BUS__BACKEND": args.bus,
        "NETCORTEX_BUS__NAMESPACE": f"benchwh{os.getpid()}",
        "NETCORTEX_STORE__SQLITE_PATH": os.path.join(tmp, "bench.db"),
        "NETCORTEX_TRAP__ENABLED": "false",
        "NETCORTEX_HTTP__HOST": HOST,
        "NETCORTEX_HTTP__PORT": "0",
        "NETCORTEX_HTTP__API_TOKEN": API_TOKEN,
        "NETCORTEX_MERAKI__SHARED_SECRET": MERAKI_SECRET,
        "NETCORTEX_LOG__LEVEL": "warning",
        "NETCORTEX_LOG__STATS_INTERVAL": "0",
    }
    if not args.handlers:
        from netcortex.reflex.registry import builtin_registry

        ids = [h.id for h in builtin_registry().all_handlers()]
        env["NETCORTEX_REFLEX__DISABLED"] = "[" + ", ".join(ids) + "]"
    if args.nats_url:
        env["NETCORTEX_BUS__NATS_URL"] = args.nats_url
    config = load_config(None, env)
    configure_logging(config.log)
    engine = Engine(config)
    await engine.start()
    port = engine.bound_addresses["http"][1]
    observer = _Observer()
    loads = [("webhook", 0.0), ("webhook", args.rate)]
    if not args.no_baseline:
        loads.insert(0, ("healthz", 0.0))
    results: list[dict[str, Any]] = []
    try:
        if not args.no_observer:
            await observer.start(engine.bus)
        from netcortex.metrics import Counter

        published = engine.metrics.get("netcortex_webhook_published_total")
        assert isinstance(published, Counter), "the engine has no webhook receiver"
        for run, (kind, rate) in enumerate(loads):
            before = _buckets(engine.metrics.render(), LATENCY_METRIC)
            done_before = published.total()
            load_args = (kind, port, args.connections, args.duration, rate, run)
            r = await _run_load(load_args, uvloop_ok, timeout=args.duration + 60)
            r.update(kind=kind, rate=rate)
            if kind == "webhook":
                # Let the publishers finish what was accepted (bounded), then read.
                accepted = r["statuses"].get(202, 0)
                deadline = time.monotonic() + 10
                while published.total() - done_before < accepted:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                r["published"] = published.total() - done_before
                after = _buckets(engine.metrics.render(), LATENCY_METRIC)
                r["hist_p50"] = _bucket_quantile(before, after, 0.50)
                r["hist_p99"] = _bucket_quantile(before, after, 0.99)
                seen = observer.take()
                r.update(
                    obs_n=len(seen),
                    obs_p50=_pct(seen, 0.50),
                    obs_p99=_pct(seen, 0.99),
                    obs_max=seen[-1] if seen else math.nan,
                )
            results.append(r)
    finally:
        await observer.stop()
        await engine.stop()
    return results


# -- report ----------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def _label(r: dict[str, Any]) -> str:
    what = "GET  healthz" if r["kind"] == "healthz" else "POST webhook"
    pace = f"@{r['rate']:,.0f}/s" if r["rate"] else "max"
    return f"{what} {pace}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per load (default 10)")
    ap.add_argument(
        "--connections", type=int, default=32, help="concurrent keep-alive connections (32)"
    )
    ap.add_argument(
        "--rate", type=float, default=GOAL_RPS, help="offered webhooks/s of the paced load (2000)"
    )
    ap.add_argument("--bus", choices=["memory", "nats"], default="memory")
    ap.add_argument(
        "--handlers",
        action="store_true",
        help="run the built-in handlers and the SQLite sink too (default: receiver only)",
    )
    ap.add_argument(
        "--no-observer", action="store_true", help="no in-process bus subscriber (exact latency)"
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the GET healthz baseline")
    ap.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = ap.parse_args()

    factory = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    loop_name = "uvloop" if factory else "asyncio"
    server = None
    args.nats_url = None
    if args.bus == "nats":
        from tests.servers import NatsServer  # the test suite's real-server helper

        server = NatsServer()
        args.nats_url = server.start()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(bench(args, factory is not None))
    finally:
        if server is not None:
            server.cleanup()

    what = "handlers+sqlite" if args.handlers else "receiver only"
    print(
        f"webhook bench [{args.bus} bus, {loop_name}, {what}]: {args.connections} keep-alive "
        f"connections, {args.duration:g} s per load, {os.cpu_count()} cpus"
    )
    print(
        f"{'load':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'srv p99≤':>10}{'pub p99':>9}  answers / transport errors"
    )
    for r in results:
        answers = " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())) or "-"
        errors = " ".join(f"{k}:{v}" for k, v in sorted(r["errors"].items()))
        server_p99 = _ms(r.get("hist_p99", math.nan))
        published_p99 = _ms(r.get("obs_p99", math.nan))
        print(
            f"{_label(r):<26}{r['rps']:>9,.0f}{_ms(r['p50']):>9}{_ms(r['p99']):>9}"
            f"{_ms(r['max']):>9}{server_p99:>10}{published_p99:>9}  {answers}"
            + (f" / {errors}" if errors else "")
        )
    print(
        "srv p99≤: request→published, the receiver's histogram (bucket upper bound); "
        "pub p99: request→delivered to a bus subscriber (exact)"
    )
    webhook = [r for r in results if r["kind"] == "webhook"]
    for r in webhook:
        if r["published"] != r["statuses"].get(202, 0):
            print(f"!! {_label(r)}: published {r['published']:.0f} of {r['statuses'].get(202)}")
    baseline = next((r for r in results if r["kind"] == "healthz"), None)
    saturated, paced = webhook[0], webhook[-1]
    if baseline is not None:
        print(f"webhook/healthz throughput ratio: {saturated['rps'] / baseline['rps']:.2f}")
    p99 = paced["obs_p99"] if paced.get("obs_n") else paced["hist_p99"]
    bad = sum(v for k, v in paced["statuses"].items() if k != 202) + sum(paced["errors"].values())
    met = (
        saturated["rps"] >= GOAL_RPS
        and paced["rps"] >= 0.98 * min(args.rate, GOAL_RPS)
        and p99 * 1000 < GOAL_P99_MS
        and bad == 0
    )
    print(
        f"goal >= {GOAL_RPS:,.0f}/s with p99 < {GOAL_P99_MS:g} ms request→published: "
        f"{'met' if met else 'NOT met'} (max {saturated['rps']:,.0f}/s; at "
        f"{paced['rps']:,.0f}/s p99 {_ms(p99)} ms, {bad} errors)"
    )


if __name__ == "__main__":
    main()
