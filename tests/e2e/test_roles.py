"""End to end: one ``receiver`` and two ``worker`` processes on one NATS namespace and
one PostgreSQL schema (``netcortex run --role``, issue 10 item 1).

All three read the same config file (the deployment guide's shape: one file,
the role on the command line). Real ``snmptrap`` traps go to the receiver, which
only publishes to JetStream; the workers share one durable consumer per handler,
so every event becomes exactly one stored outcome, handled by one of them. The
receiver keeps no store and serves no API beyond the webhook and health; a
worker binds no UDP socket at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet import (
    FleetProcess,
    counter,
    fetch,
    fleet_config,
    running_fleet,
    wait_until,
)
from tests.e2e.fleet import handled as link_downs
from tests.e2e.harness import (
    bus_overrides,
    catalog_command,
    send_traps,
    snmptrap_argv,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snmp,
    pytest.mark.nats,
    pytest.mark.xdist_group("e2e-nats"),
]

#: Traps sent in the fleet test (one snmptrap process each, all at once).
TRAPS = 24
#: The UDP source of those traps: the device every outcome names.
SOURCE = "127.0.0.71"


def _udp_inodes() -> set[str]:
    """Socket inodes of every UDP socket on the host (``/proc/net/udp`` and ``udp6``)."""
    inodes: set[str] = set()
    for name in ("udp", "udp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="ascii").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9:
                inodes.add(fields[9])
    return inodes


def udp_sockets(pid: int) -> int:
    """How many UDP sockets process ``pid`` holds open (its fds matched by inode)."""
    udp = _udp_inodes()
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue  # closed meanwhile
        found = re.fullmatch(r"socket:\[(\d+)\]", target)
        if found and found.group(1) in udp:
            count += 1
    return count


@pytest.fixture(scope="module")
def fleet_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for this module's fleet, dropped after."""
    schema = "t_roles_" + uuid.uuid4().hex[:12]
    yield schema
    fetch(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_dsn: str,
    fleet_schema: str,
) -> Iterator[list[FleetProcess]]:
    """Two workers, then one receiver, shared by the module's tests, on one config: NATS
    (a fresh namespace on the session server), PostgreSQL (a fresh schema), dedup in
    the JetStream bucket. Teardown stops all three and asserts clean exits."""
    config = fleet_config(bus_overrides("nats", request), postgres_dsn, fleet_schema)
    with running_fleet(tmp_path_factory.mktemp("fleet"), config, workers=2) as procs:
        yield procs


def _link_down(catalog: dict[str, Any], port: int, ifname: str) -> list[str]:
    return snmptrap_argv(
        catalog_command(catalog, "linkDown", "v2c"),
        port,
        clientaddr=SOURCE,
        replace={"Gi1/0/3": ifname},
    )


def test_one_receiver_two_workers_store_each_event_once(
    fleet: list[FleetProcess],
    postgres_dsn: str,
    fleet_schema: str,
    snmp_catalog: dict[str, Any],
) -> None:
    """Traps into the receiver → each event has exactly one stored link_down outcome in
    PostgreSQL, and the two workers together handled each event once."""
    worker_a, worker_b, receiver = fleet
    for proc in fleet:
        assert proc.wait_for_log("engine_started")["role"] == proc.role
        # The start-up heap left the collector's view (its full GCs were the p99).
        assert proc.wait_for_log("heap_frozen")["objects"] > 10_000
    names = [f"Gi1/0/{i}" for i in range(1, TRAPS + 1)]
    send_traps([_link_down(snmp_catalog, receiver.trap_port, n) for n in names])

    wanted = {f"{SOURCE}|{n}" for n in names}
    stored = worker_a.wait_for_outcomes(
        lambda o: o.handler_id == "link_down" and o.target in wanted, count=TRAPS, timeout=30
    )
    assert {o.target for o in stored} == wanted
    rows = fetch(
        postgres_dsn,
        f"SELECT event_id, count(outcome_id) AS n FROM {fleet_schema}.outcomes "
        "WHERE handler_id = 'link_down' GROUP BY event_id",
    )
    assert len(rows) == TRAPS
    assert all(r["n"] == 1 for r in rows), [dict(r) for r in rows if r["n"] != 1]

    # Handled once across the fleet: the workers' outcome counters add up to TRAPS.
    def handled() -> int:
        return sum(link_downs(w) for w in (worker_a, worker_b))

    wait_until(lambda: handled() >= TRAPS, "both workers' counters", timeout=30, interval=0.05)
    assert handled() == TRAPS
    # The receiver published every trap and ran no handler.
    assert counter(receiver, "netcortex_trap_published_total") == TRAPS
    assert not any(name.startswith("netcortex_reflex_") for name, _ in receiver.metrics())


def test_receiver_runs_intake_only(fleet: list[FleetProcess]) -> None:
    """The receiver has no store file, no outcomes/incidents/stream routes (404), a
    readiness without a store check, and the webhook route; the worker binds no UDP
    socket, serves the API and has no webhook route."""
    worker_a, _, receiver = fleet
    assert not receiver.db_path.exists()
    assert not any(p.suffix == ".db" for p in receiver.tmp_path.iterdir())
    for path in ("/api/v1/outcomes", "/api/v1/incidents", "/api/v1/stream"):
        assert receiver.api("GET", path).status_code == 404, path
    ready = receiver.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["role"] == "receiver"
    assert set(ready.json()["checks"]) == {"engine", "bus", "inventory"}
    assert receiver.api("GET", "/metrics").status_code == 200
    # The webhook route exists (an unsigned alert is refused by the receiver, not 404).
    assert receiver.post_webhook({"alertId": "x"}).status_code in (400, 401, 422)
    assert receiver.proc is not None
    assert udp_sockets(receiver.proc.pid) >= 1  # its trap socket

    assert worker_a.proc is not None
    assert udp_sockets(worker_a.proc.pid) == 0
    assert not worker_a.logs("listening", listener="trap")
    assert worker_a.post_webhook({"alertId": "x"}).status_code == 404
    assert worker_a.api("GET", "/api/v1/outcomes").status_code == 200
    worker_ready = worker_a.http.get("/readyz").json()
    assert worker_ready["checks"]["store"]["ok"] is True


@pytest.mark.parametrize("role", ["receiver", "worker"])
def test_role_on_memory_bus_is_refused(tmp_path: Path, role: str) -> None:
    """The real ``netcortex run --role ROLE`` on a memory-bus file exits 2 before
    starting anything, naming the file and ``bus.backend``; no store file appears."""
    path = tmp_path / "memory.yaml"
    path.write_text(f"bus:\n  backend: memory\nstore:\n  sqlite_path: {tmp_path / 'x.db'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETCORTEX_")}
    result = subprocess.run(
        [sys.executable, "-m", "netcortex", "run", "--role", role, "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}: bus.backend: is 'memory', but role '{role}' needs 'nats'" in result.stderr
    assert not (tmp_path / "x.db").exists()
