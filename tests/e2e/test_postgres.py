"""End to end on ``store.backend: postgres``: the real ``netcortex run`` process keeps
outcomes and maintenance windows in one PostgreSQL schema and creates no SQLite file.

The one-line switch the README shows (``store.backend: postgres`` plus a DSN) is
exactly what these tests write; the CLI beside the running engine reads and
writes the same schema, and a window added there suppresses the engine's next
outcome for that device without a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netcortex.contracts.reflex import OutcomeKind
from tests.e2e.harness import EngineProcess, catalog_command, send_traps, snmptrap_argv

pytestmark = [pytest.mark.e2e, pytest.mark.snmp]


def _link_down(catalog: dict[str, Any], port: int, source: str, ifname: str) -> list[str]:
    return snmptrap_argv(
        catalog_command(catalog, "linkDown", "v2c"),
        port,
        clientaddr=source,
        replace={"Gi1/0/3": ifname},
    )


def test_engine_on_postgres_stores_outcomes_and_follows_windows(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str, snmp_catalog: dict[str, Any]
) -> None:
    """Traps become outcomes in the schema; ``netcortex outcomes`` reads them there; a
    window added by ``netcortex maintenance add`` while the engine runs suppresses the
    next link-down of that device; after a restart the window is still in force."""
    store = {
        "backend": "postgres",
        "postgres_dsn": postgres_dsn,
        "postgres_schema": postgres_schema,
    }
    with EngineProcess(tmp_path, {"store": store}) as engine:
        opened = engine.wait_for_log("store_opened")
        assert opened["backend"] == "postgres"
        assert engine.wait_for_log("maintenance_calendar_opened")["where"].startswith("postgres")
        port = engine.trap_port
        send_traps([_link_down(snmp_catalog, port, "127.0.0.41", "Gi1/0/1")])
        (first,) = engine.wait_for_outcomes(lambda o: o.target == "127.0.0.41|Gi1/0/1")
        assert first.kind is OutcomeKind.LOGGED

        listed = engine.cli("outcomes", "--config", str(engine.config_path), "--json")
        assert listed.returncode == 0, listed.stderr
        assert first.outcome_id in {r["outcome_id"] for r in json.loads(listed.stdout)}

        added = engine.cli(
            "maintenance", "add", "sw41", "--config", str(engine.config_path),
            "--scope", "device", "--target", "127.0.0.41", "--start", "now", "--duration", "2h",
            "--reason", "e2e",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        engine.wait_for_log("maintenance_windows_reloaded", added=1)
        send_traps([_link_down(snmp_catalog, port, "127.0.0.41", "Gi1/0/2")])
        (second,) = engine.wait_for_outcomes(lambda o: o.target == "127.0.0.41|Gi1/0/2")
        assert second.kind is OutcomeKind.SUPPRESSED
        assert second.trace.get("window_id") == "sw41"
        engine.stop_cleanly()

    with EngineProcess(tmp_path, {"store": store}) as engine:
        send_traps([_link_down(snmp_catalog, engine.trap_port, "127.0.0.41", "Gi1/0/5")])
        (third,) = engine.wait_for_outcomes(lambda o: o.target == "127.0.0.41|Gi1/0/5")
        assert third.kind is OutcomeKind.SUPPRESSED
        # Everything from both runs is in the schema, none of it in SQLite.
        assert len(engine.outcomes()) == 3
        engine.stop_cleanly()
    assert not engine.db_path.exists()
