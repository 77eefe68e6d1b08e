"""End to end: the process lifecycle — draining on SIGINT, config errors, start failures."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    BACKENDS,
    EngineProcess,
    bus_overrides,
    capture_trap,
    catalog_command,
    send_datagrams,
    snmptrap_argv,
)

pytestmark = [pytest.mark.e2e, pytest.mark.snmp]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_drains_in_flight_events(
    tmp_path: Path, snmp_catalog: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> None:
    """SIGINT during a burst exits 0, and every event accepted before it has its outcome
    stored (events == outcomes == stored rows), on either bus."""
    linkdown = catalog_command(snmp_catalog, "linkDown", "v2c")
    datagram = capture_trap(lambda port: snmptrap_argv(linkdown, port))
    with EngineProcess(tmp_path, {"bus": bus_overrides(backend, request)}) as engine:
        send_datagrams(engine.trap_port, [datagram] * 2000)
        engine.wait_for_log("outcome_recorded")  # the pipeline is busy with the burst
        stopped = engine.stop_cleanly(signal.SIGINT)

    assert engine.logs("signal_received", signal="SIGINT")
    assert engine.logs("engine_stopping")
    assert stopped["events"] >= 1
    assert stopped["outcomes"] == stopped["events"]
    stored = engine.outcomes()
    assert len(stored) == stopped["outcomes"]
    assert {(o.handler_id, o.severity.value) for o in stored} == {("link_down", "high")}
    assert stopped["rejected"] == 0


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m netcortex ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "netcortex", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=30,
        check=False,
    )


BROKEN = """\
bus:
  backend: kafka
trap:
  port: 99999
  communities: public-but-not-a-list
  v3_users:
    - user: netcortex
      engine_id: "0x80001f880472312d6c6162"
      auth_protocol: SHA-999
      auth_key: netcortex-auth-01
"""


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_broken_config_exit_2_naming_key_and_file(tmp_path: Path, command: str) -> None:
    """check-config and run both reject a broken file with exit 2, listing every
    problem with its key and the file."""
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    argv = ["check-config", str(path)] if command == "check-config" else ["run", "-c", str(path)]
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 2, result
    for key in ("bus.backend", "trap.port", "trap.communities", "trap.v3_users.0.auth_protocol"):
        assert f"{path}: {key}:" in result.stderr
    assert "netcortex-auth-01" not in result.stderr
    assert result.stdout == ""


def test_check_config_ok(tmp_path: Path) -> None:
    """check-config on the shipped example prints the one-line summary and exits 0."""
    example = Path(__file__).resolve().parents[2] / "examples" / "netcortex.yaml"
    result = run_cli("check-config", str(example), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"OK: {example} (role=all, bus=memory, store=sqlite, trap=127.0.0.1:1162, 1 v3 users, "
        "http=127.0.0.1:8162, meraki=POST /webhooks/meraki, poll=off, graph=off, journal=off)"
    )


def test_port_in_use_exits_1_with_a_log_line(tmp_path: Path) -> None:
    """When the trap port is taken the engine logs engine_failed and exits 1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        engine = EngineProcess(tmp_path, {"trap": {"port": port}})
        with pytest.raises(RuntimeError, match="without listening"):
            engine.start()
        assert engine.stop() == 1
    (failed,) = engine.logs("engine_failed")
    assert failed["error_type"] == "OSError"
    assert not engine.logs("listening")
