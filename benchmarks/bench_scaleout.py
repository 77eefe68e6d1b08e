"""Scale-out: one receiver and N workers on NATS JetStream + PostgreSQL (issue 10, item 5).

For each N in ``--workers`` (default 1,2,4) the benchmark starts a fresh fleet of
real processes — ``netcortex run --role worker`` N times and one ``--role receiver`` —
on its own ``nats-server`` (the pinned binary, a free port, a temp JetStream file
store; a fresh namespace per N) and PostgreSQL (``--dsn``, default 127.0.0.1:5432
database ``test``; a fresh schema per N, dropped after it). A sender in a second
process offers ``--rate`` distinct SNMPv2c linkDowns per second for ``--seconds``
over real UDP (pre-encoded; a unique ifIndex per trap, spread over eight agent
addresses 127.0.1.1-8, so dedup collapses nothing) and records the wall-clock
send time of every datagram.

Measured per N, from PostgreSQL after the run: outcomes stored; outcomes/s
sustained (stored rows ÷ first-to-last store time); trap-send → outcome-stored
latency p50/p99 (each row is matched to its datagram by its target
``agent|Gi1/0/<ifIndex>``; "stored" is a ``clock_timestamp()`` column default the
benchmark adds to its throwaway schema, i.e. the row's insert in the store's
batch); the ratio to N=1 (the same-run baseline); the receiver's published and
rejected counters (its ``/metrics``) and the workers' CPU seconds per outcome
(``/proc``), from which the projection to more cores is made.

    .venv/bin/python benchmarks/bench_scaleout.py [--workers 1,2,4] [--rate 5000] [--seconds 10]
        [--drain 60] [--dedup nats|memory] [--dsn DSN] [--profile DIR] [--dump FILE]

Prints one line per N and a projection note; progress goes to stderr. Every
process, the NATS store and every schema are removed at the end, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import yaml
from tests.e2e.harness import parse_metrics, v2c_link_down
from tests.servers import NatsServer

#: Agent (UDP source) addresses the sender spreads traps over.
AGENTS = [f"127.0.1.{i}" for i in range(1, 9)]
API_TOKEN = "bench-scaleout-token-5c1e"
_START_TIMEOUT = 60.0


def progress(msg: str) -> None:
    """One progress line to stderr (stdout carries only the results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the sender (a second process) ---------------------------------------------------


def _sender(count: int, rate: float, port: int, conn: Any, go: Any) -> None:
    """Send ``count`` pre-encoded traps at ``rate``/s; return send times through ``conn``.

    Paced in 1 ms ticks (every datagram due by now goes out, then sleep to the next
    tick) rather than busy-waiting: on two cores a spinning sender would take a whole
    core from the fleet it is measuring.
    """
    packets = [v2c_link_down(i + 1, i + 1) for i in range(count)]
    socks = []
    for addr in AGENTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 0))
        socks.append(s)
    sent = [0.0] * count
    conn.send("ready")
    go.wait()
    start = time.perf_counter()
    wall0 = time.time() - start  # wall clock = wall0 + perf_counter()
    i = 0
    while i < count:
        now = time.perf_counter()
        due = min(count, int((now - start) * rate) + 1)
        while i < due:
            socks[i % len(socks)].sendto(packets[i], ("127.0.0.1", port))
            sent[i] = wall0 + time.perf_counter()
            i += 1
        time.sleep(max(0.0, start + i / rate - time.perf_counter(), 0.001))
    for s in socks:
        s.close()
    conn.send(sent)
    conn.close()


# -- fleet processes -----------------------------------------------------------------


class Proc:
    """One ``netcortex run --role ROLE`` process; stderr (JSON logs) goes to a file."""

    def __init__(
        self, name: str, role: str, config: Path, workdir: Path, profile: Path | None = None
    ) -> None:
        self.name, self.role = name, role
        self.log_path = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETCORTEX_")}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "netcortex", "run", "--config", str(config), "--role", role]
        if profile is not None:  # cProfile writes the file when the process exits cleanly
            cmd[1:1] = ["-m", "cProfile", "-o", str(profile / f"{workdir.name}-{name}.prof")]
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=workdir
            )
        self.http_port = 0
        self.trap_port = 0

    def wait_started(self, timeout: float = _START_TIMEOUT) -> None:
        """Wait for ``engine_started``; read the bound ports from ``listening`` lines."""
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{tail}")
            started = False
            for raw in self.log_path.read_text(errors="replace").splitlines():
                if '"listening"' not in raw and '"engine_started"' not in raw:
                    continue
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if line.get("event") == "listening":
                        port = int(line["port"])
                        if line.get("listener") == "http":
                            self.http_port = port
                        elif line.get("listener") == "trap":
                            self.trap_port = port
                    elif line.get("event") == "engine_started":
                        started = True
            if started:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not start within {timeout}s")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far (``/proc/<pid>/stat``; 0 when unreadable)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name: str) -> float:
        """Sum of ``name``'s samples on this process's ``/metrics`` (nan when unreachable)."""
        try:
            resp = httpx.get(
                f"http://127.0.0.1:{self.http_port}/metrics",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                timeout=5,
            )
            samples = parse_metrics(resp.text)
        except (httpx.HTTPError, ValueError):
            return float("nan")
        return sum(v for (n, _), v in samples.items() if n == name)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- PostgreSQL ------------------------------------------------------------------------


async def _sql(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on a private connection and loop."""
    return asyncio.run(_sql(dsn, query, *args))


def default_dsn() -> str:
    """127.0.0.1:5432 database ``test`` as ``postgres``, else as the current user."""
    for user in dict.fromkeys(("postgres", getpass.getuser())):
        dsn = f"postgresql://{user}@127.0.0.1:5432/test"
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            sql(dsn, "SELECT 1")
            return dsn
    raise SystemExit("PostgreSQL at 127.0.0.1:5432 (database test) does not answer; pass --dsn")


# -- one N -------------------------------------------------------------------------------


@dataclass
class Result:
    workers: int
    offered: int
    send_rate: float
    stored: int = 0
    rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    rec_p99_ms: float = float("nan")
    drain_s: float = float("nan")
    published: float = float("nan")
    rejected: float = float("nan")
    worker_cpu: list[float] = field(default_factory=list)
    receiver_cpu: float = 0.0
    dedup: str = "nats"


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_one(
    n: int,
    args: argparse.Namespace,
    dsn: str,
    nats: NatsServer,
    workdir: Path,
    procs: list[Proc],
    schemas: list[str],
) -> Result:
    """Start the fleet for ``n`` workers, offer the traps, measure, stop the fleet."""
    tag = uuid.uuid4().hex[:8]
    schema = f"bench_scaleout_{tag}_n{n}"
    schemas.append(schema)
    run_dir = workdir / f"n{n}"
    run_dir.mkdir()
    config = {
        "bus": {"backend": "nats", "nats_url": nats.url, "namespace": f"bso{tag}n{n}"},
        "store": {"backend": "postgres", "postgres_dsn": dsn, "postgres_schema": schema},
        "dedup": {"backend": args.dedup},
        "trap": {"host": "127.0.0.1", "port": 0, "communities": ["public"]},
        "http": {"host": "127.0.0.1", "port": 0, "api_token": API_TOKEN},
        "log": {"level": "info", "format": "json", "stats_interval": 0},
    }
    config_path = run_dir / "netcortex.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    progress(f"N={n}: starting {n} worker(s) and a receiver (schema {schema})")
    # The first worker alone creates the schema (its migrations), then the others.
    first = Proc("worker-1", "worker", config_path, run_dir, args.profile)
    procs.append(first)
    first.wait_started()
    # "Stored" time: a column default evaluated at the row's insert, on this
    # throwaway schema only (the store names its columns, so an extra one is inert).
    sql(
        dsn,
        f"ALTER TABLE {schema}.outcomes ADD COLUMN bench_stored_at "
        "TIMESTAMPTZ DEFAULT clock_timestamp()",
    )
    workers = [first]
    for i in range(2, n + 1):
        workers.append(Proc(f"worker-{i}", "worker", config_path, run_dir))
        procs.append(workers[-1])
    receiver = Proc("receiver", "receiver", config_path, run_dir)
    procs.append(receiver)
    for p in [*workers[1:], receiver]:
        p.wait_started()

    count = int(args.rate * args.seconds)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    go = ctx.Event()
    sender = ctx.Process(
        target=_sender, args=(count, args.rate, receiver.trap_port, child, go), daemon=True
    )
    sender.start()
    if not parent.poll(60) or parent.recv() != "ready":
        raise RuntimeError("sender did not get ready")
    time.sleep(0.5)  # let the start-up settle
    cpu0 = [w.cpu_seconds() for w in workers]
    rcpu0 = receiver.cpu_seconds()
    progress(f"N={n}: offering {count} traps at {args.rate:.0f}/s")
    go.set()

    # Progress and the end of the run: the stored count, every half second.
    send_times: list[float] | None = None
    result_rcpu = 0.0
    last, last_change = -1, time.monotonic()
    deadline = time.monotonic() + args.seconds + args.drain
    while True:
        time.sleep(0.5)
        if send_times is None and parent.poll():
            send_times = parent.recv()
            time.sleep(0.2)  # the receiver's CPU over the send window (not the drain)
            result_rcpu = receiver.cpu_seconds() - rcpu0
        stored = int(sql(dsn, f"SELECT count(*) FROM {schema}.outcomes")[0][0])
        now = time.monotonic()
        if stored != last:
            last, last_change = stored, now
            progress(f"N={n}: {stored}/{count} outcomes stored")
        if send_times is not None and (
            stored >= count or now - last_change > 5.0 or now > deadline
        ):
            break
    sender.join(10)
    assert send_times is not None
    result = Result(n, count, count / max(send_times[-1] - send_times[0], 1e-9))
    result.dedup = args.dedup
    result.worker_cpu = [w.cpu_seconds() - c for w, c in zip(workers, cpu0, strict=True)]
    result.receiver_cpu = result_rcpu
    result.published = receiver.metric("netcortex_trap_published_total")
    result.rejected = receiver.metric("netcortex_rejected_total")

    rows = sql(
        dsn,
        f"SELECT target, extract(epoch FROM recorded_at) AS rec, "
        f"extract(epoch FROM bench_stored_at) AS st FROM {schema}.outcomes "
        "WHERE handler_id = 'link_down'",
    )
    lat, rec_lat, stored_at = [], [], []
    for r in rows:
        idx = int(str(r["target"]).rsplit("/", 1)[1]) - 1
        if 0 <= idx < count:
            lat.append(float(r["st"]) - send_times[idx])
            rec_lat.append(float(r["rec"]) - send_times[idx])
            stored_at.append(float(r["st"]))
    if args.dump is not None:
        dump = args.dump.with_name(f"{args.dump.stem}-n{n}{args.dump.suffix}")
        with dump.open("w", encoding="utf-8") as out:
            out.write("index,sent,recorded,stored\n")
            for r in sorted(rows, key=lambda r: float(r["st"])):
                idx = int(str(r["target"]).rsplit("/", 1)[1]) - 1
                if 0 <= idx < count:
                    out.write(f"{idx},{send_times[idx]:.6f},{r['rec']},{r['st']}\n")
        progress(f"N={n}: per-trap times in {dump}")
    lat.sort()
    rec_lat.sort()
    stored_at.sort()
    result.stored = len(lat)
    if len(stored_at) > 1:
        result.rate = len(stored_at) / max(stored_at[-1] - stored_at[0], 1e-9)
        result.drain_s = stored_at[-1] - send_times[-1]
    result.p50_ms = _pct(lat, 0.50) * 1000
    result.p99_ms = _pct(lat, 0.99) * 1000
    result.rec_p99_ms = _pct(rec_lat, 0.99) * 1000

    progress(f"N={n}: stopping the fleet")
    for p in [receiver, *workers]:
        p.stop()
        procs.remove(p)
    sql(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    schemas.remove(schema)
    return result


def report(r: Result, base: Result | None, cores: int) -> str:
    """The summary line for one N."""
    ratio = r.rate / base.rate if base and base.rate else 1.0
    cpu = sum(r.worker_cpu)
    per_outcome_us = cpu / max(r.stored, 1) * 1e6
    return (
        f"scale-out N={r.workers} worker(s) [{cores} cores, NATS JetStream file + PostgreSQL, "
        f"dedup {r.dedup}]: "
        f"offered {r.offered} at {r.send_rate:,.0f}/s, stored {r.stored} "
        f"({r.stored / max(r.offered, 1):.1%}; receiver published {r.published:.0f}, "
        f"rejected {r.rejected:.0f}), sustained {r.rate:,.0f} outcomes/s "
        f"({ratio:.2f}x N=1), trap→stored p50 {r.p50_ms:,.1f} ms p99 {r.p99_ms:,.1f} ms "
        f"(→recorded_at p99 {r.rec_p99_ms:,.1f} ms), backlog drained {r.drain_s:.1f} s after "
        f"the last send, worker CPU {per_outcome_us:.0f} µs/outcome "
        f"({', '.join(f'{c:.1f}' for c in r.worker_cpu)} s), receiver CPU "
        f"{r.receiver_cpu / max(r.offered, 1) * 1e6:.0f} µs/trap"
    )


def projection(results: list[Result], cores: int) -> str:
    """What the per-worker figures project to with a core per worker."""
    one = results[0]
    cpu_per = sum(one.worker_cpu) / max(one.stored, 1)
    per_core = 1 / cpu_per if cpu_per > 0 else float("nan")
    rx_per = one.receiver_cpu / max(one.offered, 1)
    rx_core = 1 / rx_per if rx_per > 0 else float("nan")
    lines = [
        f"projection: one worker costs {cpu_per * 1e6:.0f} µs CPU per outcome, i.e. "
        f"≈{per_core:,.0f} outcomes/s per worker core; the receiver "
        f"{rx_per * 1e6:.0f} µs per trap (≈{rx_core:,.0f} traps/s per receiver core).",
        f"This machine has {cores} cores shared by the sender, the receiver, the workers, "
        "nats-server and PostgreSQL, so N>2 cannot scale here. With a core per worker "
        f"(and the receiver, NATS and PostgreSQL on their own), N workers project to "
        f"≈N x {per_core:,.0f}/s (4: ≈{4 * per_core:,.0f}/s, 8: ≈{8 * per_core:,.0f}/s) "
        f"until one receiver (≈{rx_core:,.0f}/s; add receivers) or PostgreSQL's batched "
        "writes (~9-15k outcomes/s, docs/PERFORMANCE.md issue 6) cap it.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workers", default="1,2,4", help="worker counts to run (default 1,2,4)")
    ap.add_argument("--rate", type=float, default=5_000, help="offered traps/s (default 5000)")
    ap.add_argument("--seconds", type=float, default=10, help="seconds of traffic (default 10)")
    ap.add_argument(
        "--drain", type=float, default=60, help="longest wait for the backlog (default 60 s)"
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the first worker under cProfile, writing DIR/n<N>-worker-1.prof",
    )
    ap.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write each trap's send, recorded_at and stored times to FILE-n<N>.csv",
    )
    ap.add_argument(
        "--dedup",
        choices=["nats", "memory"],
        default="nats",
        help="dedup backend (default nats, as deployed; memory isolates the KV's cost: "
        "the traps are distinct, so per-worker dedup changes no outcome)",
    )
    ap.add_argument("--dsn", default=None, help="PostgreSQL DSN (default 127.0.0.1:5432/test)")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    dsn = args.dsn or default_dsn()
    cores = os.cpu_count() or 1

    # SIGTERM is handled like Ctrl-C: the finally block below cleans up either way.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored
    workdir = Path(tempfile.mkdtemp(prefix="nc-scaleout-"))
    procs: list[Proc] = []
    schemas: list[str] = []
    nats = NatsServer()
    results: list[Result] = []
    try:
        nats.start()
        progress(f"nats-server on {nats.url}; PostgreSQL {dsn.rsplit('@', 1)[-1]}")
        for n in counts:
            load = os.getloadavg()[0]
            r = run_one(n, args, dsn, nats, workdir, procs, schemas)
            results.append(r)
            print(report(r, results[0] if results[0] is not r else None, cores), flush=True)
            progress(f"N={n}: load average before the run {load:.1f}")
        if results:
            print(projection(results, cores), flush=True)
    except KeyboardInterrupt:
        progress("interrupted: cleaning up")
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop(timeout=10)
        for schema in schemas:
            with contextlib.suppress(Exception):
                sql(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        nats.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
