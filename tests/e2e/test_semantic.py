"""End to end: inventory enrichment, maintenance windows and storm dedup in ``netcortex run``.

Each scenario starts its own engine process (its own config: inventory backend,
maintenance windows, dedup backend) and drives it with real traps: net-snmp's
``snmptrap`` for the catalog notifications, and raw v2c datagrams (the
ingest benchmark's encoder) for the 10,000-trap storm. Expectations wait on the
store (or log lines) with deadlines; the window scenario computes its window at
test time and waits for its end on the store, never with a blind sleep.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netcortex.sensory.trap.transport import read_udp_rcvbuf_errors
from tests.conftest import shared_fixture
from tests.e2e.harness import (
    EngineProcess,
    bus_overrides,
    catalog_command,
    send_traps,
    snmptrap_argv,
    v2c_link_down,
)
from tests.fake_netbox import DEFAULT_TOKEN, FakeNetbox, running_fake_netbox

# One xdist group: these engines each want a core, so they run one after another.
pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("e2e-semantic")]

#: The catalog's v1 linkDown: agent-addr 192.0.2.11 (sw1-north), ifIndex 3.
SW1 = "sw1-north"
SW1_GI3 = "sw1-north|GigabitEthernet1/0/3"
SW2_GI3 = "sw2-north|GigabitEthernet1/0/3"


def v1_link_down(catalog: dict[str, Any], port: int, if_index: int = 3) -> list[str]:
    """The catalog's v1 linkDown from agent-addr 192.0.2.11, rewritten to ``if_index``."""
    swaps: dict[str, str] = {}
    if if_index != 3:
        for column in ("1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"):
            swaps[f"{column}.3"] = f"{column}.{if_index}"
        swaps["1.3.6.1.2.1.2.2.1.2.3"] = f"1.3.6.1.2.1.2.2.1.2.{if_index}"
        swaps["1.3.6.1.2.1.31.1.1.1.1.3"] = f"1.3.6.1.2.1.31.1.1.1.1.{if_index}"
        swaps["3"] = str(if_index)  # the ifIndex value (the only bare "3" in the line)
        swaps["GigabitEthernet1/0/3"] = f"GigabitEthernet1/0/{if_index}"
        swaps["Gi1/0/3"] = f"Gi1/0/{if_index}"
    return snmptrap_argv(catalog_command(catalog, "linkDown", "v1"), port, replace=swaps)


def v2c_link_down_from(catalog: dict[str, Any], port: int, source: str) -> list[str]:
    """The catalog's v2c linkDown (ifIndex 3) sent from loopback address ``source``."""
    return snmptrap_argv(catalog_command(catalog, "linkDown", "v2c"), port, clientaddr=source)


def file_inventory() -> dict[str, Any]:
    """The ``inventory`` section for the shared fixture inventory file."""
    return {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}


@pytest.fixture
def fake_netbox() -> Iterator[FakeNetbox]:
    """A fake NetBox serving the fixture inventory; any invalid request fails the test."""
    with running_fake_netbox() as fake:
        yield fake


# ----------------------------------------------------------------- 1. enrichment


@pytest.mark.parametrize("inventory", ["file", "netbox"])
def test_trap_is_enriched_to_inventory_names(
    inventory: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    snmp_catalog: dict[str, Any],
) -> None:
    """The catalog's v1 linkDown from 192.0.2.11 ifIndex 3 is stored about
    sw1-north|GigabitEthernet1/0/3 at dc-north with its cable peer in the trace, from
    the inventory file and from NetBox alike; a trap from an unknown address stays raw,
    flagged unknown."""
    if inventory == "file":
        section = file_inventory()
        fake = None
    else:
        fake = request.getfixturevalue("fake_netbox")
        section = {"backend": "netbox", "netbox_url": fake.url, "netbox_token": DEFAULT_TOKEN}
    with EngineProcess(tmp_path, {"inventory": section}) as engine:
        port = engine.trap_port
        unknown = "127.0.0.71"
        send_traps(
            [v1_link_down(snmp_catalog, port), v2c_link_down_from(snmp_catalog, port, unknown)]
        )

        (known,) = engine.wait_for_outcomes(lambda o: o.target == SW1_GI3)
        assert (known.handler_id, known.kind.value, known.severity.value) == (
            "link_down",
            "logged",
            "high",
        )
        assert known.device == SW1
        assert known.site == "dc-north"
        assert known.fact_key == known.trace["fact_key"] == f"link_down|{SW1_GI3}"
        assert known.trace["inventory"] == "device+interface"
        assert known.trace["cable_peer"] == SW2_GI3
        assert known.trace["decided_by"] == "handler"
        # The receiver canonicalised before publishing: the event's target was already
        # the inventory's (no raw_target), so every source of the fact shares one key.
        assert "raw_target" not in known.trace
        assert isinstance(known.trace["snapshot_age_s"], float | int)

        (raw,) = engine.wait_for_outcomes(lambda o: o.device == unknown)
        assert (raw.kind.value, raw.target) == ("logged", f"{unknown}|Gi1/0/3")
        assert raw.trace["inventory"] == "unknown"
        assert raw.site is None

        engine.wait_for_log("outcome_recorded", handler_id="link_down", target=SW1_GI3)
        engine.stop_cleanly()
        assert DEFAULT_TOKEN not in json.dumps(engine.lines)
    if fake is not None:
        assert fake.requests, "the engine never asked the fake NetBox"
        assert fake.errors == []


# ---------------------------------------------------------- 2. maintenance window


def test_window_suppresses_then_fact_is_logged_when_it_ends(
    tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """A linkDown inside a config window on sw1-north is stored suppressed with the
    window id; when the window ends the same fact is logged high (decided_by
    maintenance_end, a new outcome id); a trap after the window is logged normally."""
    window_s = 8
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(seconds=60), now + timedelta(seconds=window_s)
    window = {
        "id": "mw-e2e-sw1",
        "scope": "device",
        "target": SW1,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "e2e: swap line card",
    }
    overrides = {"inventory": file_inventory(), "maintenance": {"windows": [window]}}
    with EngineProcess(tmp_path, overrides) as engine:
        left = (end - datetime.now(UTC)).total_seconds()
        assert left > 2.0, f"engine took too long to start: window ends in {left:.1f}s"
        send_traps([v1_link_down(snmp_catalog, engine.trap_port)])

        (shadow,) = engine.wait_for_outcomes(lambda o: o.target == SW1_GI3)
        assert shadow.kind.value == "suppressed"
        assert shadow.trace["window_id"] == "mw-e2e-sw1"
        assert shadow.trace["decided_by"] == "maintenance"
        assert shadow.severity.value == "high"  # the shadow keeps what would have fired
        assert datetime.now(UTC) < end, "the suppressed outcome came after the window ended"

        # The window's end is the event: wait on the store, past it, with a deadline.
        left = (end - datetime.now(UTC)).total_seconds()
        (after,) = engine.wait_for_outcomes(
            lambda o: o.target == SW1_GI3 and o.kind.value == "logged", timeout=left + 15
        )
        assert after.recorded_at >= end
        assert after.severity.value == "high"
        assert after.trace["decided_by"] == "maintenance_end"
        assert "window_id" not in after.trace
        assert after.outcome_id != shadow.outcome_id
        assert after.event_id == shadow.event_id
        engine.wait_for_log("fact_reevaluated", target=SW1_GI3, window_id="mw-e2e-sw1")

        # After the window: a linkDown on another interface is logged at once.
        send_traps([v1_link_down(snmp_catalog, engine.trap_port, if_index=2)])
        gi2 = "sw1-north|GigabitEthernet1/0/2"
        (later,) = engine.wait_for_outcomes(lambda o: o.target == gi2)
        assert (later.kind.value, later.severity.value) == ("logged", "high")
        assert later.trace["decided_by"] == "handler"
        assert "window_id" not in later.trace

        kinds = sorted(o.kind.value for o in engine.outcomes() if o.device == SW1)
        assert kinds == ["logged", "logged", "suppressed"]
        engine.stop_cleanly()


# ------------------------------------------------------------------------ 3. storm

STORM = 10_000
STORM_RATE = 5_000.0  # datagrams per second, paced: the receiver keeps up without loss
STORM_SOURCE = "127.0.0.81"
STORM_TARGET = f"{STORM_SOURCE}|Gi1/0/3"


def send_storm(port: int, count: int, rate: float) -> None:
    """``count`` identical v2c linkDowns (ifIndex 3, distinct request ids) at ``rate``/s."""
    packets = [v2c_link_down(i + 1, 3) for i in range(count)]
    burst = 50
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((STORM_SOURCE, 0))
        began = time.perf_counter()
        for i in range(0, count, burst):
            due = began + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            for pkt in packets[i : i + burst]:
                sock.sendto(pkt, ("127.0.0.1", port))


def storm_counts(db: Path) -> tuple[dict[str, int], int]:
    """``({kind: n}, max corroboration)`` of link_down outcomes on the storm target."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT kind, COUNT(*), MAX(CAST(json_extract(trace, '$.corroboration') AS INTEGER))"
            " FROM outcomes WHERE handler_id = 'link_down' AND target = ? GROUP BY kind",
            (STORM_TARGET,),
        ).fetchall()
    finally:
        con.close()
    return {kind: n for kind, n, _ in rows}, max((c or 0 for *_, c in rows), default=0)


def wait_storm_settled(
    engine: EngineProcess, timeout: float, stats_before: int, stall: float = 15.0
) -> tuple[dict[str, int], int]:
    """Poll the store until every published event has an outcome (or all 10,000 have).

    Published events come from the ``engine_stats`` lines; settled means the store
    holds as many storm outcomes as the event count of the last two stats lines,
    both logged after the sender finished (``stats_before`` lines were there then).
    Fails after ``timeout`` s, or sooner when the stored count has not moved for
    ``stall`` s: a slow machine (the suite's other worker running the fault tests)
    only makes it take longer, a lost outcome stops the count.
    """
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while True:
        counts, top = storm_counts(engine.db_path)
        total = sum(counts.values())
        if total >= STORM:
            return counts, top
        stats = [line["events"] for line in engine.logs("engine_stats")][stats_before:]
        if len(stats) >= 2 and stats[-1] == stats[-2] == total > 0:
            return counts, top
        now = time.monotonic()
        if total != last:
            last, moved = total, now
        if now >= deadline or now - moved > stall:
            raise TimeoutError(
                f"storm not settled ({timeout}s, or {stall}s without a new outcome): "
                f"{counts}, stats {stats[-3:]}"
            )
        if not engine.alive:
            raise RuntimeError(f"engine died; last lines: {engine.lines[-10:]}")
        time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)], ids=str
)
def test_storm_of_identical_link_downs_is_one_logged_outcome(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """10,000 identical v2c linkDowns become exactly one logged outcome and a skipped
    one for every other accepted event, with the top corroboration count equal to the
    number accepted (all 10,000 when the kernel dropped none), on each dedup backend."""
    overrides: dict[str, dict[str, Any]] = {
        "bus": bus_overrides(backend, request),
        "dedup": {"backend": backend},
        "log": {"stats_interval": 0.5},
    }
    with EngineProcess(tmp_path, overrides) as engine:
        drops_before = read_udp_rcvbuf_errors()
        began = time.monotonic()
        send_storm(engine.trap_port, STORM, STORM_RATE)
        sent_s = time.monotonic() - began
        stats_before = len(engine.logs("engine_stats"))
        counts, top = wait_storm_settled(engine, 100.0, stats_before)
        settled_s = time.monotonic() - began
        drops_after = read_udp_rcvbuf_errors()
        stopped = engine.stop_cleanly()

    accepted = sum(counts.values())
    kernel_drops = (
        drops_after - drops_before if drops_before is not None and drops_after is not None else 0
    )
    print(
        f"storm[{backend}]: sent in {sent_s:.2f}s, settled in {settled_s:.2f}s, "
        f"accepted {accepted}, kernel drops {kernel_drops}, {counts}"
    )
    assert stopped["events"] == accepted  # every event the engine published has its outcome
    assert stopped["rejected"] == 0
    assert counts.get("logged") == 1
    assert counts.get("skipped") == accepted - 1
    assert set(counts) == {"logged", "skipped"}
    assert top == accepted
    if kernel_drops == 0:
        assert accepted == STORM
    else:  # the system-wide counter may also count other sockets' drops
        assert STORM - accepted <= kernel_drops

    # The operator's view agrees: one logged link_down outcome on the storm target.
    result = engine.cli(
        "outcomes", "--config", str(engine.config_path), "--json",
        "--handler", "link_down", "--kind", "logged", "--limit", "20000",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    logged = [r for r in json.loads(result.stdout) if r["target"] == STORM_TARGET]
    assert len(logged) == 1
    assert logged[0]["trace"]["corroboration"] == 1
    assert logged[0]["trace"]["decided_by"] == "handler"
