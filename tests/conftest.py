"""Session-wide test set-up: the shared-fixture locator and real-server fixtures.

Shared test data (Meraki payloads, NetBox schema, SNMP catalog) lives in
``../shared/fixtures`` next to the checkout; ``shared_fixture()`` is the one way to
find it (override with ``NETCORTEX_SHARED_FIXTURES``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_fixtures_dir() -> Path:
    """The shared fixtures directory (``../shared/fixtures`` beside the repository)."""
    env = os.environ.get("NETCORTEX_SHARED_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "fixtures" for p in (REPO.parent, REPO.parent.parent)]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"shared fixtures not found; looked in {[str(c) for c in candidates]}")


def shared_fixture(*parts: str) -> Path:
    """Path of one shared fixture file, e.g. ``shared_fixture("snmp", "catalog.json")``."""
    path = shared_fixtures_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def load_json_fixture(*parts: str) -> Any:
    """Parsed JSON of one shared fixture file."""
    return json.loads(shared_fixture(*parts).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def snmp_catalog() -> dict[str, Any]:
    """The SNMP notification catalog (``snmp/catalog.json``)."""
    data: dict[str, Any] = load_json_fixture("snmp", "catalog.json")
    return data
