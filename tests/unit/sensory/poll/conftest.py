"""Fixtures for the poll tests: one real net-snmp ``snmpd`` per module (and xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ScriptedSnmpAgent, SnmpdServer, running_agent, snmpd_binary

#: ``make test`` installs ``snmpd`` (``make tools``); without it the tests fail, loudly
#: (a real agent is the point of them: never a skip).
HAVE_SNMPD = snmpd_binary() is not None


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdServer]:
    """A running ``snmpd`` on 127.0.0.1 and a free UDP port (see ``SnmpdServer``)."""
    if not HAVE_SNMPD:
        pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
    server = SnmpdServer(work_dir=tmp_path_factory.mktemp("snmpd"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ScriptedSnmpAgent]:
    """A scripted ``snmpd`` with one interface, ifIndex 3 (Gi1/0/3), up: the test takes
    it down (``set_interface``)."""
    with running_agent(tmp_path / "agent") as server:
        yield server
