"""Maintenance calendar benchmark: ``active()`` lookups with 10,000 windows loaded.

Usage::

    .venv/bin/python benchmarks/bench_maintenance.py [--windows N] [--calls N]

Windows: half one-off, half recurring (weekly, daily, monthly BYDAY, in UTC,
Europe/Amsterdam and America/New_York), spread over ``windows // 2`` devices,
plus site, role and tag windows. Every lookup passes a device, an interface, a
site, a role and two tags, as the maintenance gate does. Two clocks:

* ``steady``: ``at`` advances one second per call (the gate's real shape: events
  arrive in time order, so recurring windows answer from their memo); run
  twice: ``cold`` includes every window's first touch (its occurrence table is
  built lazily), ``warm`` is the long-running engine;
* ``random``: ``at`` uniformly random over 60 days (every recurring lookup
  recomputes: the worst case).

Prints calls/s and p50/p99 latency per clock (per-call ``perf_counter_ns``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcortex.contracts.memory import MaintenanceWindow
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RULES = ("FREQ=WEEKLY;BYDAY=SU", "FREQ=DAILY", "FREQ=MONTHLY;BYDAY=1TU", "FREQ=WEEKLY;BYDAY=SA,SU")
ZONES = ("UTC", "Europe/Amsterdam", "America/New_York")


def build(count: int, rng: random.Random) -> list[MaintenanceWindow]:
    """``count`` windows: half one-off, half recurring, on ``count // 2`` devices."""
    devices = max(1, count // 2)
    out: list[MaintenanceWindow] = []
    for i in range(count):
        start = T0 + timedelta(seconds=rng.randrange(0, 60 * 86_400))
        length = timedelta(seconds=rng.randrange(600, 6 * 3600))
        if i % 50 == 0:
            scope, target = rng.choice(
                [("site", f"site{i % 40}"), ("role", f"role{i % 5}"), ("tag", f"tag{i % 20}")]
            )
        else:
            scope, target = "device", f"dev{i % devices}"
        recurring = i % 2 == 1
        out.append(
            MaintenanceWindow(
                id=f"w{i}",
                scope=scope,
                target=target,
                start=start.replace(microsecond=0),
                end=(start + length).replace(microsecond=0),
                rrule=RULES[i % len(RULES)] if recurring else None,
                timezone=ZONES[i % len(ZONES)] if recurring else "UTC",
            )
        )
    return out


def run(
    cal: SqliteMaintenanceCalendar, calls: int, devices: int, clock: str, seed: int, label: str
) -> None:
    """Time ``calls`` lookups; print calls/s, p50 and p99."""
    rng = random.Random(seed)
    span = 60 * 86_400
    args = [
        (
            T0 + timedelta(seconds=n if clock == "steady" else rng.randrange(span)),
            f"dev{rng.randrange(devices)}",
            f"site{rng.randrange(40)}",
            f"role{rng.randrange(5)}",
            (f"tag{rng.randrange(20)}", f"tag{rng.randrange(20)}"),
        )
        for n in range(calls)
    ]
    samples: list[int] = []
    active = cal.active
    clock_ns = time.perf_counter_ns
    hits = 0
    started = time.perf_counter()
    for at, device, site, role, tags in args:
        t = clock_ns()
        found = active(at, device=device, interface="Gi1/0/1", site=site, role=role, tags=tags)
        samples.append(clock_ns() - t)
        hits += found is not None
    elapsed = time.perf_counter() - started
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(
        f"{label:>13}: {calls / elapsed:,.0f} calls/s  p50 {p50:.1f} µs  p99 {p99:.1f} µs  "
        f"(in a window: {hits / calls:.1%})"
    )


def main() -> None:
    """Build the calendar, then run both clocks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    windows = build(opts.windows, rng)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        cal = SqliteMaintenanceCalendar(Path(tmp) / "bench.db", windows=windows)
        print(
            f"{opts.windows:,} windows ({sum(w.rrule is not None for w in windows):,} recurring) "
            f"indexed in {time.perf_counter() - started:.2f} s; {opts.calls:,} calls per clock"
        )
        devices = max(1, opts.windows // 2)
        run(cal, opts.calls, devices, "steady", opts.seed, "steady, cold")
        run(cal, opts.calls, devices, "steady", opts.seed, "steady, warm")
        run(cal, opts.calls, devices, "random", opts.seed + 1, "random")


if __name__ == "__main__":
    main()
