"""Fixtures for the end-to-end tests: the real engine process on each bus backend.

``traps_engine`` is one ``netcortex run`` process per backend per module (starting
a Python process costs ~1 s, so the scenarios share it and keep their targets
apart by sending from distinct loopback addresses). Each backend's tests form
one xdist group, so ``pytest -n auto --dist loadgroup`` runs the memory and the
NATS engine on different workers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import BACKENDS, V3_USER, EngineProcess, bus_overrides


@pytest.fixture(scope="session", autouse=True)
def _snmptrap_installed() -> None:
    """The e2e suite needs net-snmp's snmptrap (``make tools`` installs it)."""
    if shutil.which("snmptrap") is None:
        pytest.fail("snmptrap not found: run `make tools` (Debian package snmp)")


@pytest.fixture(scope="module", params=BACKENDS)
def traps_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineProcess]:
    """A running engine (per backend) with community ``public`` and the fixture v3 user.

    Teardown stops it with SIGTERM and asserts a clean exit (code 0 and an
    ``engine_stopped`` line).
    """
    backend: str = request.param
    tmp: Path = tmp_path_factory.mktemp(f"engine-{backend}")
    overrides = {
        "bus": bus_overrides(backend, request),
        "trap": {"communities": ["public"], "v3_users": [V3_USER]},
    }
    with EngineProcess(tmp, overrides) as engine:
        yield engine
        engine.stop_cleanly()
