"""Unit tests of the incident store's SQLite specifics: query plans and member devices.

Behaviour both backends share is in ``tests/contracts/test_incident_store.py``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentCursor, IncidentQuery, IncidentState
from netcortex.memory.episodic.incidents import (
    SQLITE_INCIDENT_SCHEMA,
    _devices,
    _sqlite_select,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
CURSOR = IncidentCursor(T0, "inc-0042")


def _incident(root: str, members: tuple[str, ...]) -> Incident:
    return Incident(
        incident_id="inc-1", rule="cable_pair", root=root, state=IncidentState.OPEN,
        severity=Severity.HIGH, summary="s", members=members, evidence=(), opened_at=T0,
        updated_at=T0,
    )  # fmt: skip


class TestDevices:
    @pytest.mark.parametrize(
        ("root", "members", "devices"),
        [
            ("cable:sw1|Gi1/0/1~core1|Te1/1/1", ("core1|Te1/1/1", "sw1|Gi1/0/1"), ["core1", "sw1"]),
            ("device:core1", ("sw9|Gi1/0/2",), ["sw9", "core1"]),
            ("interface:sw1|Gi1/0/7", (), ["sw1"]),
            ("bgp:edge1|192.0.2.1", ("edge1|Te0/0/0",), ["edge1"]),
            ("site:ams1", ("sw4", "sw5"), ["sw4", "sw5"]),
            ("unknown-kind", ("", "|Gi1"), []),
        ],
    )
    def test_members_and_root_name_the_devices(
        self, root: str, members: tuple[str, ...], devices: list[str]
    ) -> None:
        """The member index holds each member's device and the root's, once each."""
        assert _devices(_incident(root, members)) == devices


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    made = sqlite3.connect(tmp_path / "nc.db")
    for statement in SQLITE_INCIDENT_SCHEMA:
        made.execute(statement)
    return made


def _plan(conn: sqlite3.Connection, query: IncidentQuery) -> list[str]:
    sql, params = _sqlite_select(query)
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


class TestQueryPlans:
    """Every query walks an index in page order: no table scan, no sort of the matches."""

    @pytest.mark.parametrize(
        ("query", "index"),
        [
            (IncidentQuery(), "incidents_updated"),
            (IncidentQuery(before=CURSOR), "incidents_updated"),
            (IncidentQuery(state=IncidentState.OPEN, before=CURSOR), "incidents_state"),
            (IncidentQuery(rule="cable_pair"), "incidents_rule"),
            (IncidentQuery(site="ams1", since=T0), "incidents_site"),
            (IncidentQuery(device="sw1", before=CURSOR), "incident_members_device"),
        ],
    )
    def test_index_driven(self, conn: sqlite3.Connection, query: IncidentQuery, index: str) -> None:
        """The filter's index serves both the filter and the order."""
        plan = _plan(conn, query)
        assert index in plan[0], plan
        assert not any("TEMP B-TREE" in step for step in plan), plan

    def test_device_is_an_index_lookup_then_a_key_lookup(self, conn: sqlite3.Connection) -> None:
        """ "Incidents of device X" reads the member index, then each incident by its key."""
        plan = _plan(conn, IncidentQuery(device="sw1", state=IncidentState.OPEN))
        assert plan[0].startswith("SEARCH m USING COVERING INDEX incident_members_device"), plan
        assert plan[1].startswith("SEARCH i USING INDEX sqlite_autoindex_incidents_1"), plan
