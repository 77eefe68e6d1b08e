"""End to end: one NetBox journal entry per incident, updated in place (issue 8, item 3).

The real ``netcortex run`` process on the shared fixture inventory, with the
journal on towards the schema-validating ``FakeNetbox`` (which serves the same
inventory), driven by real net-snmp traps (the catalog's v1 linkDown/linkUp;
agent-addr 192.0.2.11 is sw1-north, 192.0.2.12 sw2-north, ifIndex 3 is
GigabitEthernet1/0/3 on both: the two ends of one fixture cable).

* Both ends go down → exactly one entry, marked ``netcortex-incident:``, on
  sw1-north GigabitEthernet1/0/3 (the cable's a-end); the two link-downs get no
  ``netcortex-outcome:`` entry, their jobs are ``superseded``. Both come back →
  the same entry is updated (``success``, "Resolved") and is still the only one.
* A lone link-down (sw1-north GigabitEthernet1/0/2, no cable) still gets its
  own outcome entry, once the hold has passed.

Waits poll the fake's stored entries and the engine's outbox with deadlines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netcortex.contracts.outbox import JobState, incident_job_id
from netcortex.motor.format import INCIDENT_MARKER_PREFIX, MARKER_PREFIX, incident_marker, marker
from tests.conftest import shared_fixture
from tests.e2e.harness import EngineProcess, catalog_command, send_traps, snmptrap_argv
from tests.e2e.test_journal import API_BASE, OutboxReader, journal_section, wait_until
from tests.fake_netbox import DEFAULT_TOKEN, FakeNetbox, running_fake_netbox

pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("e2e-incident-journal")]

SW1 = "192.0.2.11"
SW2 = "192.0.2.12"
#: NetBox ids (fixture inventory): sw1-north GigabitEthernet1/0/3 and 1/0/2
SW1_GI3_ID = 8
SW1_GI2_ID = 7
#: The hold in these tests: long enough that a job due only after it shows the
#: incident claimed it first, short enough to wait for a lone outcome's entry.
HOLD = 6.0


@pytest.fixture
def netbox() -> Iterator[FakeNetbox]:
    """A fake NetBox serving the fixture inventory (no invalid request allowed)."""
    with running_fake_netbox() as fake:
        yield fake


def trap(catalog: dict[str, Any], key: str, port: int, agent: str, if_index: int = 3) -> list[str]:
    """The catalog's v1 ``key`` (linkDown / linkUp) from ``agent`` about ``if_index``."""
    swaps = {SW1: agent}
    if if_index != 3:
        swaps.update({"3": str(if_index), "GigabitEthernet1/0/3": f"GigabitEthernet1/0/{if_index}"})
        swaps["Gi1/0/3"] = f"Gi1/0/{if_index}"
        for column in ("1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"):
            swaps[f"{column}.3"] = f"{column}.{if_index}"
        swaps["1.3.6.1.2.1.2.2.1.2.3"] = f"1.3.6.1.2.1.2.2.1.2.{if_index}"
        swaps["1.3.6.1.2.1.31.1.1.1.1.3"] = f"1.3.6.1.2.1.31.1.1.1.1.{if_index}"
    return snmptrap_argv(catalog_command(catalog, key, "v1"), port, replace=swaps)


def entries(fake: FakeNetbox, prefix: str) -> list[dict[str, Any]]:
    """Stored entries whose last line is a marker starting with ``prefix``."""
    with fake.lock:
        return [dict(e) for e in fake.journal if e["comments"].splitlines()[-1].startswith(prefix)]


def config(fake: FakeNetbox, **journal: Any) -> dict[str, Any]:
    """Overrides: the fixture inventory, and the journal towards ``fake`` with ``HOLD``."""
    return {
        "inventory": {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))},
        "journal": journal_section(
            fake, rate_per_second=200.0, incident_hold_seconds=HOLD, **journal
        ),
    }


def test_cable_cut_is_one_entry_updated_in_place_on_resolve(
    tmp_path: Path, netbox: FakeNetbox, snmp_catalog: dict[str, Any]
) -> None:
    """Both ends of the fixture cable go down: one ``netcortex-incident:`` entry, no
    outcome entries (both jobs superseded); both come back: the same entry says
    resolved (``success``) and it is still the only entry."""
    with EngineProcess(tmp_path, config(netbox)) as engine, OutboxReader(engine) as box:
        assert engine.wait_for_log("engine_started")["association"] is True
        port = engine.trap_port
        send_traps([trap(snmp_catalog, "linkDown", port, a) for a in (SW1, SW2)])
        opened = engine.wait_for_log("incident_opened", rule="cable_pair", timeout=10.0)
        iid = opened["incident_id"]
        (entry,) = wait_until(
            lambda: entries(netbox, INCIDENT_MARKER_PREFIX), 15, "the incident's entry",
            engine=engine,
        )  # fmt: skip
        assert entry["comments"].splitlines()[-1] == incident_marker(iid)
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
            "dcim.interface",
            SW1_GI3_ID,
        )
        assert entry["kind"]["value"] == "danger"
        assert f"{API_BASE}/api/v1/incidents/{iid}" in entry["comments"]
        downs = [o for o in engine.outcomes() if o.handler_id == "link_down"]
        assert len(downs) == 2
        superseded = wait_until(
            lambda: {j.job_id: j for j in box.jobs(JobState.SUPERSEDED)}, 10,
            "superseded link-down jobs", engine=engine,
        )  # fmt: skip
        assert set(superseded) == {o.outcome_id for o in downs}
        assert {j.last_error for j in superseded.values()} == {f"part of incident {iid}"}

        send_traps([trap(snmp_catalog, "linkUp", port, a) for a in (SW1, SW2)])
        engine.wait_for_log("incident_resolved", incident_id=iid, timeout=10.0)

        def resolved_entry() -> dict[str, Any] | None:
            found = entries(netbox, INCIDENT_MARKER_PREFIX)
            if len(found) == 1 and found[0]["kind"]["value"] == "success":
                return found[0]
            return None

        updated = wait_until(resolved_entry, 15, "the entry updated as resolved", engine=engine)
        assert updated["id"] == entry["id"]
        assert updated["comments"].startswith("**Resolved: ")
        assert updated["comments"].splitlines()[-1] == incident_marker(iid)
        line = engine.wait_for_log("journal_delivered", incident_id=iid, via="updated")
        assert line["entry_id"] == entry["id"]

        # Every outcome of the incident (downs and ups) was superseded: none can ever
        # get an entry of its own; the incident's job holds the resolved version.
        outcome_ids = {o.outcome_id for o in engine.outcomes()}
        assert len(outcome_ids) == 4
        wait_until(
            lambda: {j.job_id for j in box.jobs(JobState.SUPERSEDED)} == outcome_ids, 10,
            "every outcome job superseded", engine=engine,
        )  # fmt: skip
        (job,) = box.jobs(JobState.DELIVERED)
        assert job.job_id == incident_job_id(iid)
        assert job.entry_id == entry["id"]
        assert job.incident is not None
        assert job.incident.state.value == "resolved"
        stats = box.stats()
        assert (stats.pending, stats.delivered, stats.dead, stats.superseded) == (0, 1, 0, 4)
        assert len(netbox.journal) == 1
        assert entries(netbox, MARKER_PREFIX) == []
        engine.stop_cleanly()
    assert engine.secrets_in_logs(DEFAULT_TOKEN) == []


def test_a_lone_link_down_still_gets_its_own_entry_after_the_hold(
    tmp_path: Path, netbox: FakeNetbox, snmp_catalog: dict[str, Any]
) -> None:
    """A high link-down on an interface without a cable peer opens no incident: its
    outcome entry is written once the hold has passed, not before."""
    with EngineProcess(tmp_path, config(netbox)) as engine, OutboxReader(engine) as box:
        sent = time.monotonic()
        send_traps([trap(snmp_catalog, "linkDown", engine.trap_port, SW1, if_index=2)])
        (job,) = wait_until(lambda: box.jobs(JobState.PENDING), 10, "the job", engine=engine)
        assert job.outcome is not None
        assert job.outcome.target == "sw1-north|GigabitEthernet1/0/2"
        held = (job.next_attempt_at - job.created_at).total_seconds()
        assert held == pytest.approx(HOLD, abs=0.01)
        (entry,) = wait_until(
            lambda: entries(netbox, MARKER_PREFIX), HOLD + 15, "the outcome's entry",
            engine=engine,
        )  # fmt: skip
        assert entry["comments"].splitlines()[-1] == marker(job.job_id)
        assert (entry["assigned_object_type"], entry["assigned_object_id"]) == (
            "dcim.interface",
            SW1_GI2_ID,
        )
        # The request log agrees: nothing was written before the hold ran out.
        with netbox.lock:
            posts = [r.at for r in netbox.requests if r.method == "POST"]
        assert len(posts) == 1
        assert posts[0] - sent >= HOLD - 0.5, "written before the hold ran out"
        assert entries(netbox, INCIDENT_MARKER_PREFIX) == []
        assert box.stats().superseded == 0
        engine.stop_cleanly()
