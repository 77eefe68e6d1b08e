"""``engine.role`` / ``netcortex run --role``: what each role runs, the config rules,
``check-config``'s summary, the receiver's HTTP app, and the deployment examples
(``examples/deploy``) validated by ``netcortex check-config``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from netcortex.app import Engine
from netcortex.bridge.cli import main
from netcortex.bridge.http.intake import create_intake_app
from netcortex.config import Config, load_config
from netcortex.errors import ConfigError
from netcortex.metrics import Registry
from netcortex.roles import RolePlan, role_plan, role_warnings
from netcortex.thalamus.memory import InMemoryEventBus

pytestmark = pytest.mark.usefixtures("restore_logging")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "examples" / "deploy"
TOKEN = "unit-api-token-0123456789abcdef"

NATS = "bus:\n  backend: nats\n  nats_url: nats://127.0.0.1:1\n"


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a systemd ``EnvironmentFile`` (comments and blanks skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


class TestPlan:
    def test_each_role_runs_its_parts(self) -> None:
        """all runs everything; a receiver only intake; a worker everything but intake."""
        plans = {
            role: role_plan(Config.model_validate({"engine": {"role": role}, **_nats()}))
            for role in ("all", "receiver", "worker")
        }
        assert plans["all"] == RolePlan("all", intake=True, reflexes=True, api=True)
        assert plans["receiver"] == RolePlan("receiver", intake=True, reflexes=False, api=False)
        assert plans["worker"] == RolePlan("worker", intake=False, reflexes=True, api=True)

    def test_default_is_all(self) -> None:
        """Without engine.role a process does everything, as before roles existed."""
        assert load_config(None, {}).engine.role == "all"

    def test_worker_warnings(self) -> None:
        """A worker on SQLite or with memory dedup is legal but warned about; a worker on
        PostgreSQL with JetStream dedup, and the other roles, are not."""
        lone = Config.model_validate({"engine": {"role": "worker"}, **_nats()})
        assert [w.split(" is ")[0] for w in role_warnings(lone)] == [
            "store.backend",
            "dedup.backend",
        ]
        fleet = Config.model_validate(
            {
                "engine": {"role": "worker"},
                "store": {"backend": "postgres", "postgres_dsn": "postgresql://u@h/db"},
                "dedup": {"backend": "nats"},
                **_nats(),
            }
        )
        assert role_warnings(fleet) == []
        receiver = Config.model_validate({"engine": {"role": "receiver"}, **_nats()})
        assert role_warnings(receiver) == []


def _nats() -> dict[str, dict[str, str]]:
    return {"bus": {"backend": "nats", "nats_url": "nats://127.0.0.1:1"}}


class TestConfigErrors:
    @pytest.mark.parametrize("role", ["receiver", "worker"])
    def test_role_needs_nats_names_key_and_file(self, tmp_path: Path, role: str) -> None:
        """engine.role receiver/worker on the memory bus: one problem at bus.backend in
        the file, saying which role needs what."""
        path = _write(tmp_path, f"engine:\n  role: {role}\nbus:\n  backend: memory\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert info.value.problems == [
            (
                str(path),
                "bus.backend",
                f"is 'memory', but role '{role}' needs 'nats': receivers and workers meet "
                "on JetStream (set bus.backend: nats and bus.nats_url, or run role 'all')",
            )
        ]

    def test_run_role_flag_on_memory_bus_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``run --role receiver`` with a memory-bus file is a configuration error (exit
        2) naming the file and bus.backend; nothing starts."""
        path = _write(tmp_path, "bus:\n  backend: memory\n")
        assert main(["run", "--role", "receiver", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: bus.backend: is 'memory', but role 'receiver' needs 'nats'" in err

    def test_env_role_is_checked_too(self) -> None:
        """NETCORTEX_ENGINE__ROLE=worker on the default (memory) bus is refused."""
        with pytest.raises(ConfigError, match="role 'worker' needs 'nats'"):
            load_config(None, {"NETCORTEX_ENGINE__ROLE": "worker"})

    def test_flag_overrides_file_and_env(self, tmp_path: Path) -> None:
        """``--role`` (load_config's role) wins over engine.role in the file and env."""
        path = _write(tmp_path, NATS + "engine:\n  role: receiver\n")
        config = load_config(path, {"NETCORTEX_ENGINE__ROLE": "receiver"}, role="worker")
        assert config.engine.role == "worker"

    def test_unknown_role(self, tmp_path: Path) -> None:
        """A role that does not exist is named with the allowed ones."""
        path = _write(tmp_path, NATS + "engine:\n  role: relay\n")
        with pytest.raises(ConfigError, match=r"engine\.role: Input should be 'all', 'receiver'"):
            load_config(path, {})

    def test_run_rejects_unknown_role_flag(self, capsys: pytest.CaptureFixture[str]) -> None:
        """argparse refuses ``--role relay`` (exit 2, usage)."""
        with pytest.raises(SystemExit) as info:
            main(["run", "--role", "relay"])
        assert info.value.code == 2
        assert "invalid choice: 'relay'" in capsys.readouterr().err


class TestCheckConfig:
    def test_receiver_summary(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """check-config shows the role and marks what a receiver does not run."""
        path = _write(tmp_path, NATS + "engine:\n  role: receiver\n")
        assert main(["check-config", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"OK: {path} (role=receiver, bus=nats nats://127.0.0.1:1, ")
        assert "store=n/a" in out
        assert "graph=n/a, journal=n/a)" in out
        assert "warning" not in out

    def test_worker_on_sqlite_warns(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A worker on SQLite passes (one worker is fine) with a warning line each for
        the store and dedup; trap, meraki and poll show n/a."""
        path = _write(tmp_path, NATS + "engine:\n  role: worker\n")
        assert main(["check-config", str(path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "role=worker" in lines[0]
        assert "trap=n/a" in lines[0]
        assert "meraki=n/a, poll=n/a" in lines[0]
        assert [line.split(":")[0:2] for line in lines[1:]] == [
            ["warning", " store.backend is 'sqlite'"],
            ["warning", " dedup.backend is 'memory'"],
        ]


class TestDeploymentExamples:
    @pytest.mark.parametrize(
        ("name", "role"), [("receiver.yaml", "receiver"), ("worker.yaml", "worker")]
    )
    def test_check_config_accepts_them(
        self,
        name: str,
        role: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """examples/deploy/{receiver,worker}.yaml with the secrets of
        netcortex.env.example (as systemd's EnvironmentFile passes them) pass
        ``netcortex check-config`` with no warning, in their role."""
        for key, value in _env_file(DEPLOY / "netcortex.env.example").items():
            monkeypatch.setenv(key, value)
        path = DEPLOY / name
        code = main(["check-config", str(path)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.startswith(f"OK: {path} (role={role}, bus=nats nats://nats1.example.net:4222")
        assert "warning" not in out

    def test_units_run_the_example_configs(self) -> None:
        """Each systemd unit runs its role on its config, restarts on failure and is
        hardened (dynamic user; only the receiver may bind port 162)."""
        receiver = (DEPLOY / "netcortex-receiver.service").read_text(encoding="utf-8")
        worker = (DEPLOY / "netcortex-worker@.service").read_text(encoding="utf-8")
        assert "run --role receiver --config /etc/netcortex/receiver.yaml" in receiver
        assert "run --role worker --config /etc/netcortex/worker.yaml" in worker
        for unit in (receiver, worker):
            assert "Restart=on-failure" in unit
            assert "DynamicUser=yes" in unit
            assert "NoNewPrivileges=yes" in unit
            assert "EnvironmentFile=/etc/netcortex/netcortex.env" in unit
        assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in receiver
        assert "CapabilityBoundingSet=\n" in worker


class TestEngineComposition:
    """Construction does no I/O, so what each role builds is visible without starting."""

    def _config(self, tmp_path: Path, role: str) -> Config:
        path = _write(
            tmp_path,
            NATS
            + f"engine:\n  role: {role}\n"
            + f"store:\n  sqlite_path: {tmp_path / 'out.db'}\n"
            + "poll:\n  enabled: true\n",
        )
        return load_config(path, {})

    def test_receiver_builds_intake_only(self, tmp_path: Path) -> None:
        """A receiver has trap and poll receivers, the webhook and an HTTP server, and no
        store, calendar, dedup, runner, correlator, journal, graph or stream hub."""
        engine = Engine(self._config(tmp_path, "receiver"))
        assert set(engine.receivers) == {"trap", "poll"}
        assert engine.webhook is not None
        assert engine.http is not None
        for part in (
            engine.store,
            engine.calendar,
            engine.dedup,
            engine.runner,
            engine.pipeline,
            engine.incidents,
            engine.incident_store,
            engine.outbox,
            engine.journal,
            engine.graph,
            engine.stream_hub,
            engine.status_sampler,
        ):
            assert part is None

    def test_worker_builds_no_intake(self, tmp_path: Path) -> None:
        """A worker has the reflex side and the API, and no receiver or webhook."""
        engine = Engine(self._config(tmp_path, "worker"))
        assert engine.receivers == {}
        assert engine.webhook is None
        assert engine.store is not None
        assert engine.runner is not None
        assert engine.incidents is not None
        assert engine.stream_hub is not None
        assert engine.http is not None


class TestIntakeApp:
    async def test_routes_and_readiness(self) -> None:
        """The receiver's app: health, readiness without a store (503 until started and
        connected), metrics behind the token, no API routes, the webhook route."""
        config = Config.model_validate({"http": {"api_token": TOKEN}})
        metrics = Registry()
        bus = InMemoryEventBus(config.bus, metrics)
        ready = [False]
        app = create_intake_app(
            config=config,
            metrics=metrics,
            bus=bus,
            memory=None,
            webhook=None,
            ready=lambda: ready[0],
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            body = (await client.get("/api/v1/readyz")).json()
            assert body["status"] == "not_ready"
            assert body["role"] == "receiver"
            assert set(body["checks"]) == {"engine", "bus", "inventory"}
            await bus.start()
            ready[0] = True
            resp = await client.get("/readyz")
            assert resp.status_code == 200, resp.text
            assert (await client.get("/metrics")).status_code in (401, 403)
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert (await client.get("/api/v1/metrics", headers=auth)).status_code == 200
            # The receiver's half of the accounting: its sources, nothing handled here.
            assert (await client.get("/api/v1/accounting")).status_code in (401, 403)
            metrics.counter(
                "netcortex_received_total", "Inputs received, by source.", ("source",)
            ).inc(3, source="snmp.trap")
            metrics.counter(
                "netcortex_trap_published_total", "Traps published.", ("event_class",)
            ).inc(3, event_class="link_down")
            account = (await client.get("/api/v1/accounting", headers=auth)).json()
            trap = next(s for s in account["sources"] if s["source"] == "trap")
            assert (trap["received"], trap["published"], trap["balanced"]) == (3, 3, True)
            assert account["handled"]["total"] == 0
            for path in ("/api/v1/outcomes", "/api/v1/incidents", "/api/v1/stream", "/"):
                assert (await client.get(path, headers=auth)).status_code == 404, path
            # meraki disabled here (webhook=None): no route
            assert (await client.post("/webhooks/meraki", content=b"{}")).status_code == 404
            await bus.close()
