"""Association benchmark: per-outcome cost of ``Correlator.observe`` against open facts held.

Usage::

    .venv/bin/python benchmarks/bench_association.py [--count N] [--sizes 10,1000,10000]

For each size, the correlator first holds that many open facts (half of them
lone link-downs, half the two ends of cable incidents that stay open, spread
over devices of 100 interfaces and sites of 50 devices). Then ``count``
outcomes run through it in cycles that each open, grow and resolve incidents
on fresh devices: a cable pair, a BGP drop over it, a device restart with two
cable peers' link-downs, and every recovery. Times are per ``observe`` call
(no I/O; the trace carries cable peers, peer devices and sites, as the enrich
gate fills them). One line per size, then the same-run ratio of the largest to
the smallest size: item 4 of issue 8 asks that it stay near 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcortex.association import Correlator
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

T0 = datetime(2026, 11, 28, tzinfo=UTC)


class Feed:
    """Makes outcomes with unique ids and a trace like the enrich gate's."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(
        self, handler: str, target: str, *, peer: str | None = None, site: str = "s0"
    ) -> ReflexOutcome:
        self.n += 1
        trace: dict[str, object] = {"site": site}
        if peer is not None:
            trace["cable_peer" if handler.startswith("link") else "peer_device"] = peer
        return ReflexOutcome(
            outcome_id=f"o{self.n}",
            handler_id=handler,
            event_id=f"e{self.n}",
            subject=f"reflex.{handler}",
            kind=OutcomeKind.LOGGED,
            severity=Severity.HIGH,
            target=target,
            device=target.partition("|")[0],
            site=site,
            trace=trace,
        )


def background(correlator: Correlator, feed: Feed, size: int, now: datetime) -> None:
    """Hold ``size`` open facts: lone link-downs and open cable incidents."""
    for i in range(size // 2):
        dev, itf = f"bg{i // 100}", f"lone{i % 100}"
        correlator.observe(feed("link_down", f"{dev}|{itf}", site=f"site{i // 5000}"), now)
    for i in range(size - size // 2):
        pair, end = divmod(i, 2)
        a, b = f"ca{pair // 100}|p{pair % 100}", f"cb{pair // 100}|p{pair % 100}"
        me, other = (a, b) if end == 0 else (b, a)
        outcome = feed("link_down", me, peer=other, site=f"site{pair // 5000}")
        correlator.observe(outcome, now)
    assert correlator.fact_count == size, correlator.fact_count


def cycle(feed: Feed, k: int) -> list[ReflexOutcome]:
    """One cycle of outcomes on fresh devices ``x<k>``, ``y<k>``, ``z<k>``; all resolve."""
    x, y, z = f"x{k}", f"y{k}", f"z{k}"
    xa, ya = f"{x}|a", f"{y}|a"
    xb, zb = f"{x}|b", f"{z}|b"
    session = f"{x}|10.0.0.2"
    return [
        feed("link_down", xa, peer=ya),
        feed("link_down", ya, peer=xa),  # cable pair opens
        feed("bgp_drop", session, peer=y),  # joins it
        feed("link_down", zb, peer=xb),
        feed("device_reboot", y),  # device root absorbs the cable incident
        feed("bgp_established", session),
        feed("link_up", xa),
        feed("link_up", ya),
        feed("link_up", zb),  # resolves
    ]


def run(size: int, count: int) -> list[float]:
    """Per-observe latencies (seconds) for ``count`` outcomes with ``size`` facts held."""
    correlator = Correlator(None)
    feed = Feed()
    now = T0
    background(correlator, feed, size, now)
    held = correlator.fact_count
    times: list[float] = []
    perf = time.perf_counter
    k = 0
    while len(times) < count:
        for outcome in cycle(feed, k):
            now += timedelta(milliseconds=1)
            started = perf()
            correlator.observe(outcome, now)
            times.append(perf() - started)
        k += 1
    # the measured cycles left nothing behind; the background is still held
    assert correlator.fact_count == held, (correlator.fact_count, held)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=90_000)
    parser.add_argument("--sizes", default="10,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    means: dict[int, float] = {}
    for size in sizes:
        run(size, min(args.count, 9_000))  # warm-up
        times = run(size, args.count)
        qs = statistics.quantiles(times, n=100)
        means[size] = statistics.fmean(times)
        print(
            f"association open_facts={size} outcomes={len(times)} "
            f"mean={means[size] * 1e6:.1f}us p50={qs[49] * 1e6:.1f}us p99={qs[98] * 1e6:.1f}us "
            f"rate={1 / means[size]:,.0f}/s"
        )
    lo, hi = sizes[0], sizes[-1]
    print(f"association ratio mean({hi})/mean({lo}) = {means[hi] / means[lo]:.2f}")


if __name__ == "__main__":
    main()
