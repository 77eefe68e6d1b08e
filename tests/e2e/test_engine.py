"""``app.Engine`` in-process: the composition root without a subprocess (fast scenarios)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.app import Engine
from netcortex.config import Config
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import ConfigError, RegistryError
from tests.e2e.harness import catalog_command, snmptrap_argv

pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("e2e-engine")]


def engine_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A config with trap and HTTP on port 0 and the store under ``tmp_path``."""
    data: dict[str, dict[str, Any]] = {
        "store": {"sqlite_path": str(tmp_path / "outcomes.db")},
        "trap": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.model_validate(data)


async def snmptrap(argv: list[str]) -> None:
    """Run one snmptrap command and assert it succeeded."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


async def wait_for_stored(engine: Engine, count: int, within: float = 10.0) -> list[ReflexOutcome]:
    """Poll the engine's own store until it holds ``count`` outcomes (deadline, no guess)."""
    async with asyncio.timeout(within):
        while True:
            await engine.store.flush()
            found = await engine.store.query(OutcomeQuery(limit=1000))
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


async def test_trap_to_stored_outcome_in_process(
    tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """An in-process Engine binds port 0, logs listening, and turns a trap into a stored
    high link_down outcome; stop returns the totals."""
    with capture_logs() as logs:
        async with Engine(engine_config(tmp_path)) as engine:
            host, port = engine.bound_addresses["trap"]
            assert host == "127.0.0.1"
            assert port > 0
            argv = snmptrap_argv(catalog_command(snmp_catalog, "linkDown", "v1"), port)
            await snmptrap(argv)
            (outcome,) = await wait_for_stored(engine, 1)
            assert (outcome.handler_id, outcome.severity.value, outcome.target) == (
                "link_down",
                "high",
                "192.0.2.11|Gi1/0/3",
            )
        summary = await engine.stop()  # idempotent: the same totals again
    assert (summary.events, summary.outcomes, summary.rejected) == (1, 1, 0)
    events = [e["event"] for e in logs]
    listening = next(e for e in logs if e["event"] == "listening")
    assert (listening["listener"], listening["transport"], listening["port"]) == (
        "trap",
        "udp",
        port,
    )
    assert events.index("listening") < events.index("engine_started")
    assert events.index("engine_stopping") < events.index("engine_stopped")
    stopped = next(e for e in logs if e["event"] == "engine_stopped")
    assert (stopped["events"], stopped["outcomes"]) == (1, 1)


async def test_stop_without_start_is_safe(tmp_path: Path) -> None:
    """Stopping an engine that never started does nothing and reports zeros."""
    engine = Engine(engine_config(tmp_path))
    summary = await engine.stop()
    assert (summary.events, summary.outcomes, summary.rejected) == (0, 0, 0)
    assert not (tmp_path / "outcomes.db").exists()


async def test_failed_start_closes_what_was_opened(tmp_path: Path) -> None:
    """A port in use makes start raise OSError, after closing the bus, store and runner."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        engine = Engine(engine_config(tmp_path, trap={"port": taken.getsockname()[1]}))
        with capture_logs() as logs, pytest.raises(OSError, match=r"in use|Errno"):
            await engine.start()
    events = [e["event"] for e in logs]
    assert "engine_start_failed" in events
    assert "listening" not in events
    assert not engine.runner.ready_event.is_set()
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        await engine.start()


async def test_trap_receiver_can_be_disabled(tmp_path: Path) -> None:
    """trap.enabled: false (and http.enabled: false) starts the engine with no listeners."""
    config = engine_config(tmp_path, trap={"enabled": False}, http={"enabled": False})
    async with Engine(config) as engine:
        assert engine.bound_addresses == {}
        assert engine.receivers == {}
        assert engine.webhook is None


async def test_http_alone_listens_without_the_trap_receiver(tmp_path: Path) -> None:
    """trap.enabled: false keeps the HTTP server (and the webhook receiver) running."""
    async with Engine(engine_config(tmp_path, trap={"enabled": False})) as engine:
        assert set(engine.bound_addresses) == {"http"}
        assert engine.webhook is not None


def test_unknown_disabled_handler_fails_construction(tmp_path: Path) -> None:
    """A typo in reflex.disabled is caught when the engine is built."""
    with pytest.raises(RegistryError, match="link_dwon"):
        Engine(engine_config(tmp_path, reflex={"disabled": ["link_dwon"]}))


def test_disabled_handlers_are_left_out(tmp_path: Path) -> None:
    """Handlers named in reflex.disabled are not registered."""
    engine = Engine(engine_config(tmp_path, reflex={"disabled": ["link_up", "bgp_established"]}))
    ids = {h.id for h in engine.registry.all_handlers()}
    assert "link_up" not in ids
    assert "bgp_established" not in ids
    assert "link_down" in ids


def test_config_error_type_is_distinct() -> None:
    """Config problems and registry problems are different errors (exit 2 vs runtime)."""
    assert not issubclass(RegistryError, ConfigError)


async def test_engine_stats_line_reports_totals_and_rejections(tmp_path: Path) -> None:
    """With log.stats_interval set, the engine logs engine_stats lines whose totals
    include rejected input by reason."""
    config = engine_config(tmp_path, log={"stats_interval": 0.05})
    with capture_logs() as logs:
        async with Engine(config) as engine:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"not snmp at all", engine.bound_addresses["trap"])

            def rejected_line() -> dict[str, Any] | None:
                return next(
                    (e for e in logs if e["event"] == "engine_stats" and e["rejected_by_reason"]),
                    None,
                )

            async with asyncio.timeout(10):  # polled with a deadline: the line is periodic
                while True:
                    line = rejected_line()
                    if line is not None:
                        break
                    await asyncio.sleep(0.02)
    assert line["rejected"] == 1
    assert line["rejected_by_reason"] == {"malformed": 1}
    assert (line["events"], line["outcomes"]) == (0, 0)
