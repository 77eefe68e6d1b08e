"""End to end, fault tests of the scale-out deployment (issue 10, item 3, first two bullets).

Real processes only: one ``netcortex run --role receiver`` and several
``--role worker`` on one NATS namespace (JetStream **file** storage in the
session test server's temporary directory, ``Nats-Msg-Id`` dedup), one fresh
PostgreSQL schema and dedup in the JetStream key-value bucket — the deployment
guide's shape, all processes reading one config file.

Traps are raw v2c linkDown datagrams (``harness.v2c_link_down``) sent over
loopback UDP in batches: each batch is sent once the receiver's counters show
the previous one received, so the rate is steady, the kernel buffer never
overflows and nothing sleeps. Every wait is on a condition with a deadline.
A receiver serves no ``/api/v1/accounting`` (only ``/metrics``), so its trap
accounting is read from the counters that endpoint is built from. The fleet, the
pacing and those reads are ``tests/e2e/fleet.py``'s (the other fault tests share them).

The kill test found a real defect (fixed, ``reflex.settle``): the runner used to
ack a message once the store had *queued* its outcome, so a SIGKILL inside the
store's flush interval lost those acked outcomes (seen: 2,992/3,000 stored, with
all 3,000 published). Now the ack waits for the commit.

Sizes: the issue's figures, 20,000 traps (kill test) and 10,000 identical
linkDowns (storm test). On the quiet 2-core VM the fleet stores ~1,000
outcomes/s, so they take ~30 s and ~40 s; under load (parallel jobs, load
average 5-10) several times that, hence the per-test timeout of 600 s and a
settle deadline that grows with the size. ``NETCORTEX_FAULT_EVENTS`` and
``NETCORTEX_FAULT_STORM`` change them (smaller for a quick run by hand; read in
``tests.e2e.fleet``, whose ``SETTLE_TIMEOUT`` grows with them).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.fleet import (
    FAULT_EVENTS,
    FAULT_STORM,
    FleetProcess,
    fleet_bus,
    fleet_config,
    handled,
    outcome_rows,
    running_fleet,
    send_paced,
    trap_intake,
    wait_all_published,
    wait_for_rows,
    wait_until,
)
from tests.e2e.harness import v2c_link_down

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-scaleout-faults"),
]

#: Distinct linkDowns in the kill test (the issue's 20,000, see the docstring).
EVENTS = FAULT_EVENTS
#: Identical linkDowns in the storm test (the issue's 10,000).
STORM = FAULT_STORM
#: The UDP source of the kill test's traps (the device) and of the storm's.
SOURCE, STORM_SOURCE = "127.0.0.91", "127.0.0.92"


@pytest.fixture
def make_fleet(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> Iterator[Callable[[int], list[FleetProcess]]]:
    """``make_fleet(n)``: ``n`` workers then one receiver (last in the list), all
    started on the fleet config (``tests.e2e.fleet``) with a fresh PostgreSQL schema;
    every process still alive is stopped cleanly at teardown."""
    # The storm's one fact must stay one however long a loaded machine takes for
    # 10,000 events: link_down's own 60 s window ran out mid-storm once in CI.
    dedup = {"backend": "nats", "windows": {"link_down": 3600}}
    config = fleet_config(fleet_bus(request), postgres_dsn, postgres_schema, dedup=dedup)
    with ExitStack() as stack:
        yield lambda workers: stack.enter_context(running_fleet(tmp_path, config, workers))


@pytest.mark.timeout(600)
def test_kill_one_of_three_workers_mid_stream(
    make_fleet: Callable[[int], list[FleetProcess]], postgres_dsn: str, postgres_schema: str
) -> None:
    """SIGKILL of one of three workers while distinct linkDowns flow → the two survivors
    finish: every event has exactly one ``logged`` outcome in PostgreSQL (no outcome id
    or event id twice), and the receiver received and published every trap."""
    *workers, receiver = make_fleet(3)
    victim, survivors = workers[0], workers[1:]
    traps = [(SOURCE, v2c_link_down(1 + i, 1 + i)) for i in range(EVENTS)]
    half = EVENTS // 2

    send_paced(receiver, traps[:half])
    # Mid-stream: the victim is busy (it has handled some events) when it dies.
    wait_until(lambda: handled(victim) > 0, "the victim never handled", timeout=30)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    assert victim.proc.wait(timeout=10) == -signal.SIGKILL
    send_paced(receiver, traps[half:])

    # JetStream holds every event first: a row missing later was lost downstream of it.
    wait_all_published(receiver, EVENTS)
    wait_for_rows(postgres_dsn, postgres_schema, EVENTS)
    rows = outcome_rows(postgres_dsn, postgres_schema)
    assert len(rows) == EVENTS
    assert len({r["outcome_id"] for r in rows}) == EVENTS
    assert len({r["event_id"] for r in rows}) == EVENTS
    assert {r["kind"] for r in rows} == {"logged"}
    assert all(w.alive for w in survivors)


@pytest.mark.timeout(600)
def test_identical_storm_over_four_workers_logs_once(
    make_fleet: Callable[[int], list[FleetProcess]], postgres_dsn: str, postgres_schema: str
) -> None:
    """The same linkDown ``STORM`` times, spread over four workers sharing the JetStream
    dedup bucket → exactly one ``logged`` outcome, every other event ``skipped``, each
    event one row, and at least two of the workers took a share."""
    *workers, receiver = make_fleet(4)
    datagram = v2c_link_down(4242, 7)
    send_paced(receiver, [(STORM_SOURCE, datagram)] * STORM)

    wait_for_rows(postgres_dsn, postgres_schema, STORM)
    rows = outcome_rows(postgres_dsn, postgres_schema)
    assert len(rows) == STORM
    assert len({r["event_id"] for r in rows}) == STORM
    kinds = [r["kind"] for r in rows]
    assert kinds.count("logged") == 1, {k: kinds.count(k) for k in set(kinds)}
    assert kinds.count("skipped") == STORM - 1
    intake = trap_intake(receiver)
    assert (intake["received"], intake["published"], intake["rejected"]) == (STORM, STORM, 0)
    per_worker = [handled(w) for w in workers]
    assert sum(per_worker) >= STORM, per_worker  # a redelivery past ack_wait re-handles
    assert sum(1 for n in per_worker if n > 0) >= 2, per_worker  # the work was shared
