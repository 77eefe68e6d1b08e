"""End to end: outcomes become NetBox journal entries exactly once, whatever NetBox does.

Issue 7's fault tests, against the real ``netcortex run`` process and the
schema-validating ``FakeNetbox`` over real HTTP. Each scenario starts its own
engine with ``journal.enabled`` pointing at the fake, and drives it with raw
SNMPv2c linkDown traps (``v2c_link_down``; one ``snmptrap`` process per trap
would be far too slow for a thousand).

The inventory is an access layer built for these tests (``access_inventory``):
switches ``acc01-north`` … with management addresses ``127.0.10.N`` (a trap
sent from that loopback address is that switch's) and ports
``GigabitEthernet1/0/1`` … (``snmp_ifindex`` = port number), so every
(switch, ifIndex) pair is a distinct fact with NetBox names, and its entry
lands on the NetBox interface. The engine reads the same document from an
inventory file (so it starts while NetBox is down) that the fake serves.

What is asserted comes from three places: the fake's stored entries (counted
by idempotency marker), its request log (arrival times), and the engine's
outbox read beside it (``app.make_outbox`` on the engine's store: the SQLite
file or the PostgreSQL schema). Waits are on conditions with deadlines.

``journal.rate_per_second`` is raised from its default of 5/s to 500-1000/s
here: at 5/s, 1,000 entries (three requests each) would take ten minutes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

from netcortex.app import make_outbox
from netcortex.config import load_config
from netcortex.contracts.outbox import JobState, JournalJob, OutboxStats
from netcortex.contracts.reflex import OutcomeKind
from netcortex.motor.format import MARKER_PREFIX, marker
from netcortex.motor.netbox import JOURNAL_PATH
from tests.e2e.harness import EngineProcess, v2c_link_down
from tests.fake_netbox import DEFAULT_TOKEN, FakeNetbox, fixture_inventory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-journal")]

_T = TypeVar("_T")

#: What the fake notes about a request whose body never arrived in full (the
#: sender was killed between headers and body).
CUT_SHORT = ("missing JSON body", "body is not JSON")
#: The netcortex API base URL entries link back to.
API_BASE = "https://netcortex.example.com"
#: Switch N's management (trap source) address is f"{MGMT_PREFIX}{N}".
MGMT_PREFIX = "127.0.10."
PORTS = 50


# ------------------------------------------------------------------ inventory


def switch_name(n: int) -> str:
    """The name of access switch ``n`` (1-based)."""
    return f"acc{n:02d}-north"


def access_inventory(switches: int) -> dict[str, Any]:
    """The fixture inventory plus ``switches`` access switches of ``PORTS`` ports each.

    Built from the fixture's own objects (sw1-north, its ports and its management
    IP), so every entry keeps NetBox's shape. Switch ``n`` has id ``100 + n``,
    address ``127.0.10.n/32`` on interface ``Vlan10``, and ports
    ``GigabitEthernet1/0/p`` (id ``10000 + 100 n + p``, ``snmp_ifindex`` ``p``),
    none cabled.
    """
    inv = fixture_inventory()
    devices = inv["/api/dcim/devices/"]
    interfaces = inv["/api/dcim/interfaces/"]
    addresses = inv["/api/ipam/ip-addresses/"]
    device_tpl = next(d for d in devices["results"] if d["name"] == "sw1-north")
    port_tpl = next(i for i in interfaces["results"] if i["id"] == 6)
    ip_tpl = next(a for a in addresses["results"] if a["id"] == 2)
    base = "https://netbox.example.com"
    for n in range(1, switches + 1):
        name, dev_id, ip_id = switch_name(n), 100 + n, 1000 + n
        address = f"{MGMT_PREFIX}{n}/32"
        brief_dev = {
            "id": dev_id,
            "url": f"{base}/api/dcim/devices/{dev_id}/",
            "display": name,
            "name": name,
            "description": "",
        }
        brief_ip = copy.deepcopy(device_tpl["primary_ip4"])
        brief_ip.update(
            id=ip_id,
            url=f"{base}/api/ipam/ip-addresses/{ip_id}/",
            display=address,
            address=address,
            description=f"{name} mgmt",
        )
        device = copy.deepcopy(device_tpl)
        device.update(
            id=dev_id,
            url=brief_dev["url"],
            display_url=f"{base}/dcim/devices/{dev_id}/",
            display=name,
            name=name,
            serial=f"FOCE2E{n:05d}",
            primary_ip=brief_ip,
            primary_ip4=copy.deepcopy(brief_ip),
            interface_count=PORTS + 1,
        )
        devices["results"].append(device)
        for port in range(1, PORTS + 1):
            interfaces["results"].append(
                _interface(
                    port_tpl, brief_dev, port_id(n, port), f"GigabitEthernet1/0/{port}", port
                )
            )
        mgmt_id = 10_000 + 100 * n + 99
        interfaces["results"].append(_interface(port_tpl, brief_dev, mgmt_id, "Vlan10", None))
        ip = copy.deepcopy(ip_tpl)
        ip.update(
            id=ip_id,
            url=brief_ip["url"],
            display_url=f"{base}/ipam/ip-addresses/{ip_id}/",
            display=address,
            address=address,
            assigned_object_id=mgmt_id,
            description=f"{name} mgmt",
        )
        ip["assigned_object"].update(
            id=mgmt_id,
            url=f"{base}/api/dcim/interfaces/{mgmt_id}/",
            display="Vlan10",
            device=brief_dev,
            name="Vlan10",
        )
        addresses["results"].append(ip)
    for body in (devices, interfaces, addresses):
        body["count"] = len(body["results"])
    return inv


def _interface(
    template: dict[str, Any],
    device: dict[str, Any],
    if_id: int,
    name: str,
    if_index: int | None,
) -> dict[str, Any]:
    """An uncabled interface ``name`` on ``device`` (a brief device), shaped like ``template``."""
    base = "https://netbox.example.com"
    made = copy.deepcopy(template)
    made.update(
        id=if_id,
        url=f"{base}/api/dcim/interfaces/{if_id}/",
        display_url=f"{base}/dcim/interfaces/{if_id}/",
        display=name,
        device=device,
        name=name,
        description="",
        cable=None,
        cable_end="",
        link_peers=[],
        link_peers_type=None,
        connected_endpoints=None,
        connected_endpoints_type=None,
        connected_endpoints_reachable=None,
        custom_fields={"snmp_ifindex": if_index},
        _occupied=False,
    )
    return made


def port_id(switch: int, port: int) -> int:
    """NetBox id of ``GigabitEthernet1/0/<port>`` on access switch ``switch``."""
    return 10_000 + 100 * switch + port


def inventory_file(tmp_path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Write ``doc`` for the engine; its ``inventory`` config section."""
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return {"backend": "file", "path": str(path)}


def places(count: int, first_switch: int = 1) -> list[tuple[int, int]]:
    """``count`` distinct (switch, port) pairs, port-major within each switch."""
    return [(first_switch + i // PORTS, 1 + i % PORTS) for i in range(count)]


# ---------------------------------------------------------------------- traps


def send_link_downs(
    port: int, where: Sequence[tuple[str, int]], rate: float = 2000.0, first_id: int = 1
) -> None:
    """One v2c linkDown per ``(source address, ifIndex)``, paced at ``rate`` per second."""
    socks: dict[str, socket.socket] = {}
    try:
        began = time.perf_counter()
        for i, (source, if_index) in enumerate(where):
            sock = socks.get(source)
            if sock is None:
                sock = socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((source, 0))
            pause = began + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sock.sendto(v2c_link_down(first_id + i, if_index), ("127.0.0.1", port))
    finally:
        for sock in socks.values():
            sock.close()


def switch_traps(pairs: Sequence[tuple[int, int]]) -> list[tuple[str, int]]:
    """``(source, ifIndex)`` of linkDowns on access switch ports."""
    return [(f"{MGMT_PREFIX}{switch}", port) for switch, port in pairs]


# ---------------------------------------------------------------- engine side


def journal_section(fake: FakeNetbox, **changes: Any) -> dict[str, Any]:
    """The ``journal`` section towards ``fake``: short timings, default rate unless set."""
    section: dict[str, Any] = {
        "enabled": True,
        "netbox_url": fake.url,
        "netbox_token": DEFAULT_TOKEN,
        "api_base_url": API_BASE,
        "timeout_seconds": 2.0,
        "lease_seconds": 8.0,
        "max_backoff_seconds": 1.0,
        "poll_interval_seconds": 0.5,
        # Association is on (the default): no hold, these outcomes join no incident.
        "incident_hold_seconds": 0.0,
    }
    section.update(changes)
    return section


class OutboxReader:
    """The engine's journal outbox, opened beside the running engine (test side).

    ``app.make_outbox`` on the engine's ``store`` section: the same SQLite file
    or PostgreSQL schema the engine writes, on a private event loop.
    """

    def __init__(self, engine: EngineProcess) -> None:
        self._box = make_outbox(load_config(engine.config_path, {}).store)
        self._runner = asyncio.Runner()

    def __enter__(self) -> OutboxReader:
        self._runner.run(self._box.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._runner.run(self._box.close())
        finally:
            self._runner.close()

    def stats(self) -> OutboxStats:
        """Jobs by state now."""
        return self._runner.run(self._box.stats())

    def jobs(self, state: JobState, limit: int = 5000) -> list[JournalJob]:
        """The jobs in ``state``, oldest first."""
        return list(self._runner.run(self._box.jobs(state, limit)))


def wait_until(
    check: Callable[[], _T],
    timeout: float,
    what: str,
    *,
    engine: EngineProcess | None = None,
    interval: float = 0.05,
) -> _T:
    """Poll ``check`` until it returns something true; that value.

    Raises:
        TimeoutError: not within ``timeout`` seconds (the message names ``what``).
        RuntimeError: ``engine`` died meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if engine is not None and not engine.alive:
            raise RuntimeError(f"engine died waiting for {what}; last lines: {engine.lines[-10:]}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def entries_per_marker(fake: FakeNetbox) -> Counter[str]:
    """How many stored journal entries carry each idempotency marker line."""
    with fake.lock:
        comments = [e["comments"] for e in fake.journal]
    return Counter(
        line.strip()
        for text in comments
        for line in text.splitlines()
        if line.strip().startswith(MARKER_PREFIX)
    )


def entry_ids_by_job(fake: FakeNetbox) -> dict[str, list[int]]:
    """Job (outcome) id → the ids of the stored entries carrying its marker."""
    found: dict[str, list[int]] = {}
    with fake.lock:
        entries = [(e["id"], e["comments"]) for e in fake.journal]
    for entry_id, text in entries:
        for line in text.splitlines():
            if line.strip().startswith(MARKER_PREFIX):
                found.setdefault(line.strip()[len(MARKER_PREFIX) :].strip(), []).append(entry_id)
    return found


@pytest.fixture
def netbox_factory() -> Iterator[Callable[..., FakeNetbox]]:
    """Start fake NetBoxes (``factory(**kwargs)``); each is stopped at teardown and must
    have seen no invalid request."""
    made: list[FakeNetbox] = []

    def factory(cls: type[FakeNetbox] = FakeNetbox, **kwargs: Any) -> FakeNetbox:
        fake = cls(**kwargs).start()
        made.append(fake)
        return fake

    yield factory
    for fake in made:
        fake.stop()
    for fake in made:
        assert fake.errors == [], f"invalid requests reached the fake NetBox: {fake.errors}"


def assert_exactly_once(fake: FakeNetbox, box: OutboxReader, outcome_ids: set[str]) -> None:
    """One entry per outcome id, nothing else in NetBox, every job delivered and
    pointing at its entry."""
    assert entries_per_marker(fake) == {marker(i): 1 for i in outcome_ids}
    assert len(fake.journal) == len(outcome_ids)
    stats = box.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (0, len(outcome_ids), 0)
    by_job = entry_ids_by_job(fake)
    for job in box.jobs(JobState.DELIVERED):
        assert by_job[job.job_id] == [job.entry_id], job.job_id


# -------------------------------------------------------------------- scenarios


@pytest.mark.slow
def test_netbox_down_while_1000_outcomes_arrive_then_exactly_1000_entries(
    tmp_path: Path, netbox_factory: Callable[..., FakeNetbox]
) -> None:
    """NetBox refuses connections while 1,000 distinct link-downs become outcomes and
    every job fails at least once; after NetBox returns there are exactly 1,000 journal
    entries, one per outcome (by marker), each on the NetBox interface of its outcome,
    and the outbox shows all 1,000 delivered (rate raised to 1,000/s for this test)."""
    doc = access_inventory(20)
    netbox = netbox_factory(inventory=doc)
    netbox.stop()  # the port now refuses; start() later binds it again
    overrides = {
        "inventory": inventory_file(tmp_path, doc),
        "journal": journal_section(netbox, rate_per_second=1000.0, concurrency=16, batch_size=200),
    }
    pairs = places(1000)
    with EngineProcess(tmp_path, overrides) as engine, OutboxReader(engine) as box:
        send_link_downs(engine.trap_port, switch_traps(pairs))
        wait_until(lambda: box.stats().pending == 1000, 30, "1,000 pending jobs", engine=engine)
        wait_until(
            lambda: all(j.attempts >= 1 for j in box.jobs(JobState.PENDING)),
            30,
            "every job attempted while NetBox is down",
            engine=engine,
            interval=0.2,
        )
        outage = engine.wait_for_log("journal_unavailable")
        assert outage["reason"] == "unavailable"
        assert netbox.journal == []

        netbox.start()
        wait_until(lambda: box.stats().delivered == 1000, 60, "1,000 deliveries", engine=engine)
        engine.wait_for_log("journal_recovered")

        outcomes = engine.outcomes()
        assert len(outcomes) == 1000
        assert {(o.kind, o.severity.value) for o in outcomes} == {(OutcomeKind.LOGGED, "high")}
        targets = {o.outcome_id: o.target for o in outcomes}
        assert set(targets.values()) == {
            f"{switch_name(s)}|GigabitEthernet1/0/{p}" for s, p in pairs
        }
        assert_exactly_once(netbox, box, set(targets))
        # Each entry sits on the NetBox interface its outcome names.
        ids = {f"{switch_name(s)}|GigabitEthernet1/0/{p}": port_id(s, p) for s, p in pairs}
        by_job = {j.entry_id: j.job_id for j in box.jobs(JobState.DELIVERED)}
        for entry in netbox.journal:
            target = targets[by_job[entry["id"]]]
            assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
                "dcim.interface",
                ids[target],
            )
            assert entry["kind"]["value"] == "danger"
            assert f"{API_BASE}/api/v1/outcomes/" in entry["comments"]
        engine.stop_cleanly()
    assert engine.secrets_in_logs(DEFAULT_TOKEN) == []


class RecordingNetbox(FakeNetbox):
    """A fake NetBox that also notes when it answered each injected fault."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: ``(time.monotonic(), status, Retry-After)`` per injected fault answered
        self.faulted: list[tuple[float, int | None, str | None]] = []

    def take_fault(self, method: str, path: str) -> Any:
        """The fault for this request, noted with the time."""
        fault = super().take_fault(method, path)
        if fault is not None:
            with self.lock:
                self.faulted.append((time.monotonic(), fault.status, fault.retry_after))
        return fault


def test_429_and_503_bursts_deliver_everything_once_honouring_retry_after(
    tmp_path: Path, netbox_factory: Callable[..., FakeNetbox]
) -> None:
    """Bursts of 429 (Retry-After: 1) and 503 while 40 outcomes are delivered: every
    outcome gets exactly one entry, each failure cost exactly one retry, and after each
    429 NetBox saw no request at all before its Retry-After had passed (one job at a
    time, so the request log is the client's own sequence)."""
    doc = access_inventory(2)
    fake = netbox_factory(RecordingNetbox, inventory=doc)
    assert isinstance(fake, RecordingNetbox)
    overrides = {
        "inventory": inventory_file(tmp_path, doc),
        "journal": journal_section(fake, rate_per_second=500.0, concurrency=1, batch_size=10),
    }
    # Burst 1 before any traffic: the first two requests are rate-limited.
    fake.inject(count=2, status=429, retry_after="1")
    pairs = places(40)
    with EngineProcess(tmp_path, overrides) as engine, OutboxReader(engine) as box:
        send_link_downs(engine.trap_port, switch_traps(pairs))
        wait_until(lambda: len(fake.journal) >= 10, 20, "10 entries", engine=engine)
        fake.inject(count=4, status=503)  # burst 2
        wait_until(lambda: len(fake.journal) >= 20, 20, "20 entries", engine=engine)
        fake.inject(count=1, status=429, retry_after="1")  # burst 3: both kinds
        fake.inject(count=3, status=503)
        wait_until(lambda: box.stats().delivered == 40, 30, "40 deliveries", engine=engine)

        outcome_ids = {o.outcome_id for o in engine.outcomes()}
        assert len(outcome_ids) == 40
        assert_exactly_once(fake, box, outcome_ids)
        statuses = Counter(status for _, status, _ in fake.faulted)
        assert statuses == {429: 3, 503: 7}
        # Every failed request failed exactly one attempt of one job; nothing else failed.
        assert sum(j.attempts for j in box.jobs(JobState.DELIVERED)) == 10
        assert engine.metric("netcortex_journal_failures_total", reason="rate_limited") == 3
        assert engine.metric("netcortex_journal_failures_total", reason="server_error") == 7
        engine.stop_cleanly()

    arrivals = sorted(r.at for r in fake.requests)
    for answered, status, retry_after in fake.faulted:
        if status != 429:
            continue
        assert retry_after is not None
        allowed = answered + float(retry_after)
        early = [at - answered for at in arrivals if answered < at < allowed]
        assert early == [], f"requests {early} s after a 429 with Retry-After {retry_after}"


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigkill_mid_delivery_then_restart_loses_and_duplicates_nothing(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    netbox_factory: Callable[..., FakeNetbox],
) -> None:
    """NetBox holds every write 0.5 s; the engine is SIGKILLed while writes are in
    flight (some jobs delivered, some pending, some entries written whose answer the
    engine never saw). After a restart on the same store every outcome has exactly one
    entry, every job is delivered with its entry's id, and the restarted engine found
    each orphaned entry by its marker instead of writing it again."""
    doc = access_inventory(2)
    fake = netbox_factory(inventory=doc)
    section: dict[str, Any] = {"backend": "sqlite", "sqlite_path": str(tmp_path / "outcomes.db")}
    if store == "postgres":
        section = {
            "backend": "postgres",
            "postgres_dsn": request.getfixturevalue("postgres_dsn"),
            "postgres_schema": request.getfixturevalue("postgres_schema"),
        }
    overrides = {
        "store": section,
        "inventory": inventory_file(tmp_path, doc),
        # A short lease (4 x the 1 s timeout): the killed engine's jobs come back soon.
        "journal": journal_section(
            fake,
            rate_per_second=500.0,
            concurrency=16,
            batch_size=16,
            timeout_seconds=1.0,
            lease_seconds=4.0,
        ),
    }
    total = 100
    hold = 0.5
    fake.inject(count=None, seconds=120, delay=hold, method="POST")

    def posts() -> list[float]:
        with fake.lock:
            return [r.at for r in fake.requests if r.method == "POST"]

    def writes_in_flight() -> bool:
        """At least 8 POSTs arrived less than ``hold / 2`` ago: held, not stored yet, and
        still held for at least ``hold / 2`` (ample time for the kill to land)."""
        recent = time.monotonic() - hold / 2
        return sum(at > recent for at in posts()) >= 8

    engine = EngineProcess(tmp_path, overrides)
    with engine, OutboxReader(engine) as box:
        send_link_downs(engine.trap_port, switch_traps(places(total)))
        wait_until(
            lambda: (s := box.stats()).pending + s.delivered == total,
            20,
            f"{total} jobs",
            engine=engine,
        )
        wait_until(lambda: box.stats().delivered >= 16, 20, "a first batch", engine=engine)
        wait_until(writes_in_flight, 20, "writes in flight", engine=engine, interval=0.005)
        assert engine.stop(signal.SIGKILL) == -signal.SIGKILL

        # The held writes complete after the kill: NetBox stores what the engine never
        # heard. A POST the kill cut short (headers sent, body not) reaches the fake
        # without its body: that one is answered 400 and noted as invalid; it is the
        # only kind of invalid request tolerated here, and only from the killed engine.
        def settled() -> bool:
            sent = len(posts())
            with fake.lock:
                return sent == len(fake.journal) + len(fake.errors)

        wait_until(settled, 10, "held writes stored")
        fake.clear_faults()
        with fake.lock:
            cut_short = list(fake.errors)
            fake.errors.clear()
        assert set(cut_short) <= {f"POST {JOURNAL_PATH}: {why}" for why in CUT_SHORT}, cut_short
        killed = box.stats()
        delivered = {j.job_id for j in box.jobs(JobState.DELIVERED)}
        orphans = set(entry_ids_by_job(fake)) - delivered
        assert killed.dead == 0
        assert killed.pending + killed.delivered == total
        assert 0 < killed.delivered < total, killed
        assert len(orphans) >= 8, "writes were in flight at the kill"

        with EngineProcess(tmp_path, overrides) as again:
            wait_until(lambda: box.stats().delivered == total, 30, "all delivered", engine=again)
            outcome_ids = {o.outcome_id for o in again.outcomes()}
            assert len(outcome_ids) == total
            assert_exactly_once(fake, box, outcome_ids)
            found = {line["job_id"] for line in again.logs("journal_delivered", via="existing")}
            assert found == orphans
            again.stop_cleanly()


def test_device_unknown_to_netbox_is_dead_lettered_and_blocks_nothing(
    tmp_path: Path, netbox_factory: Callable[..., FakeNetbox]
) -> None:
    """A link-down on a switch the engine's inventory has but NetBox does not
    (acc03-north), and one from an address no inventory knows, are dead-lettered at
    their first attempt with the reason naming the device; the 20 others, sent after
    them and delivered one job at a time, all get their entry."""
    engine_doc = access_inventory(3)
    fake = netbox_factory(inventory=access_inventory(2))
    overrides = {
        "inventory": inventory_file(tmp_path, engine_doc),
        "journal": journal_section(fake, rate_per_second=500.0, concurrency=1),
    }
    stranger = "127.0.0.97"
    with EngineProcess(tmp_path, overrides) as engine, OutboxReader(engine) as box:
        ghosts = [(f"{MGMT_PREFIX}3", 7), (stranger, 5)]
        send_link_downs(engine.trap_port, ghosts)
        wait_until(lambda: (s := box.stats()).pending + s.dead == 2, 20, "2 jobs", engine=engine)
        send_link_downs(engine.trap_port, switch_traps(places(20)), first_id=100)
        wait_until(
            lambda: (s := box.stats()).delivered == 20 and s.dead == 2,
            30,
            "20 delivered, 2 dead",
            engine=engine,
        )
        dead = {j.outcome.device: j for j in box.jobs(JobState.DEAD)}
        assert set(dead) == {"acc03-north", stranger}
        assert "device 'acc03-north' not in NetBox" in dead["acc03-north"].last_error
        assert f"device '{stranger}' not in NetBox" in dead[stranger].last_error
        assert {j.attempts for j in dead.values()} == {1}
        assert all(j.finished_at is not None for j in dead.values())

        lines = engine.logs("journal_dead")
        assert {(line["job_id"], line["reason"]) for line in lines} == {
            (j.job_id, "unknown_device") for j in dead.values()
        }
        assert engine.metric("netcortex_journal_dead_total", reason="unknown_device") == 2

        delivered = {o.outcome_id for o in engine.outcomes() if o.device not in dead}
        assert len(delivered) == 20
        assert entries_per_marker(fake) == {marker(i): 1 for i in delivered}
        assert {e["assigned_object_type"] for e in fake.journal} == {"dcim.interface"}
        engine.stop_cleanly()
