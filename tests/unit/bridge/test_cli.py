"""Unit tests for ``netcortex.bridge.cli``: argument parsing, check-config and outcomes."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netcortex import __version__
from netcortex.bridge import cli
from netcortex.bridge.cli import UsageError, main, parse_time, render_table
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.testing import make_event
from tests.unit.bridge._helpers import config_with_outcomes

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "netcortex.yaml"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

DESIGN_FIELDS = {
    "outcome_id", "handler_id", "event_id", "subject", "kind", "severity", "target", "device",
    "site", "summary", "diagnostic", "fact_key", "occurred_at", "recorded_at",
}  # fmt: skip


#: Commands configure logging for the process; ``restore_logging`` puts it back.
pytestmark = pytest.mark.usefixtures("restore_logging")


class TestParseTime:
    @pytest.mark.parametrize(
        ("text", "delta"),
        [("30s", timedelta(seconds=30)), ("10m", timedelta(minutes=10)),
         ("2h", timedelta(hours=2)), ("1d", timedelta(days=1)), ("1w", timedelta(weeks=1)),
         (" 90 min ", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)),
         ("now", timedelta(0))],
    )  # fmt: skip
    def test_durations_ago(self, text: str, delta: timedelta) -> None:
        """A duration means that long before now."""
        assert parse_time(text, now=NOW) == NOW - delta

    @pytest.mark.parametrize(
        "text", ["2026-03-01T11:00:00Z", "2026-03-01T11:00:00+00:00", "2026-03-01 11:00:00"]
    )
    def test_iso_times(self, text: str) -> None:
        """ISO-8601 times are accepted; a time without zone is UTC."""
        assert parse_time(text, now=NOW) == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)

    def test_iso_with_offset_keeps_the_instant(self) -> None:
        """An explicit offset is honoured."""
        assert parse_time("2026-03-01T13:00:00+02:00") == datetime(2026, 3, 1, 11, tzinfo=UTC)

    @pytest.mark.parametrize("text", ["10x", "yesterday", "-5m", ""])
    def test_invalid(self, text: str) -> None:
        """Anything else is a usage error explaining the accepted forms."""
        with pytest.raises(UsageError, match="30s, 10m, 2h, 1d"):
            parse_time(text, now=NOW)

    def test_duration_beyond_the_calendar_is_a_usage_error(self) -> None:
        """A duration reaching before year 1 is a usage error, not a traceback."""
        with pytest.raises(UsageError, match="too long ago"):
            parse_time("99999999w", now=NOW)


class TestBasics:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """'netcortex version' prints the package version."""
        assert main(["version"]) == 0
        assert capsys.readouterr().out.strip() == f"netcortex {__version__}"

    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            ([], ["run", "check-config", "outcomes", "version"]),
            (["run"], ["--config", "SIGTERM", "drains", "NETCORTEX_"]),
            (["check-config"], ["FILE", "every problem"]),
            (["outcomes"], ["--since", "--severity", "--kind", "--handler", "--device",
                            "--limit", "--json", "--export", "--config"]),
        ],
    )  # fmt: skip
    def test_help_texts(
        self, argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every command has a --help that explains its options."""
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        for word in words:
            assert word in out

    def test_no_command_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Running without a command exits 2 with a usage message."""
        with pytest.raises(SystemExit) as info:
            main([])
        assert info.value.code == 2
        assert "usage" in capsys.readouterr().err


class TestCheckConfig:
    def test_example_is_ok(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The shipped example passes with a one-line summary."""
        assert main(["check-config", str(EXAMPLE)]) == 0
        assert capsys.readouterr().out.strip() == (
            f"OK: {EXAMPLE} (role=all, bus=memory, store=sqlite, trap=127.0.0.1:1162, 1 v3 users, "
            "http=127.0.0.1:8162, meraki=POST /webhooks/meraki, poll=off, graph=off, journal=off)"
        )

    def test_summary_says_when_http_endpoints_fail_closed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No api token / no shared secret is legal, and the summary says what it means."""
        path = tmp_path / "closed.yaml"
        path.write_text("trap:\n  enabled: false\n", encoding="utf-8")
        assert main(["check-config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "http=127.0.0.1:8162, API closed: no http.api_token" in out
        assert "meraki=refusing all: no meraki.shared_secret" in out

    def test_summary_says_what_is_polled(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """poll.enabled: the summary counts the targets, gives the interval and says
        whether the inventory's devices are polled too (only with an inventory)."""
        inv = tmp_path / "inventory.json"
        inv.write_text("{}", encoding="utf-8")
        polled = (
            "poll:\n  enabled: true\n  interval_seconds: 30\n  targets:\n"
            "    - {device: sw1, host: 192.0.2.11}\n    - {device: sw2, host: 192.0.2.12}\n"
        )
        plain = tmp_path / "poll.yaml"
        plain.write_text(polled, encoding="utf-8")
        assert main(["check-config", str(plain)]) == 0
        assert (
            capsys.readouterr()
            .out.strip()
            .endswith(", poll=2 targets every 30s, graph=off, journal=off)")
        )
        with_inv = tmp_path / "poll-inv.yaml"
        with_inv.write_text(polled + f"inventory:\n  backend: file\n  path: {inv}\n", "utf-8")
        assert main(["check-config", str(with_inv)]) == 0
        out = capsys.readouterr().out.strip()
        assert out.endswith(", poll=2 targets every 30s +inventory, graph=off, journal=off)")

    def test_problems_listed_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A broken file exits 2 and names every bad key and the file on stderr."""
        path = tmp_path / "bad.yaml"
        path.write_text("trap:\n  port: 99999\nbus:\n  backend: kafka\n", encoding="utf-8")
        assert main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: trap.port:" in err
        assert f"{path}: bus.backend:" in err

    def test_window_the_calendar_refuses_is_a_config_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check-config refuses a maintenance window the calendar would refuse at run time."""
        path = tmp_path / "w.yaml"
        path.write_text(
            "maintenance:\n  windows:\n    - {id: w, scope: device, target: r1,"
            " start: '2026-12-06T02:00:00Z', duration: 60, rrule: 'FREQ=MINUTELY'}\n",
            encoding="utf-8",
        )
        assert main(["check-config", str(path)]) == 2
        assert f"{path}: maintenance.windows.0:" in capsys.readouterr().err

    def test_unknown_handler_in_dedup_windows_is_a_config_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check-config names dedup.windows when it mentions a handler that does not exist."""
        path = tmp_path / "d.yaml"
        path.write_text("dedup:\n  windows: {linkdown: 30}\n", encoding="utf-8")
        assert main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: dedup.windows:" in err
        assert "linkdown" in err

    def test_nats_credentials_are_not_printed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The summary names the NATS server without the user-info of its URL."""
        path = tmp_path / "nats.yaml"
        path.write_text(
            "bus:\n  backend: nats\n  nats_url: nats://alice:s3cret@nats.example:4222\n",
            encoding="utf-8",
        )
        assert main(["check-config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "s3cret" not in out
        assert "nats://**redacted**@nats.example:4222" in out

    def test_unknown_disabled_handler(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A typo in reflex.disabled is a configuration error, not a silent no-op."""
        path = tmp_path / "bad.yaml"
        path.write_text("reflex:\n  disabled: [link_dwon]\n", encoding="utf-8")
        assert main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: reflex.disabled:" in err
        assert "link_dwon" in err

    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing file exits 2 naming it."""
        assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
        assert "nope.yaml" in capsys.readouterr().err


def _outcome(
    handler: str,
    severity: Severity,
    device: str,
    interface: str,
    age: timedelta,
    kind: OutcomeKind = OutcomeKind.LOGGED,
) -> ReflexOutcome:
    event = make_event("link_down", device=device, interface=interface)
    outcome = ReflexOutcome.for_event(
        handler, event, severity=severity, kind=kind, summary=f"{interface} on {device} went down"
    )
    return replace(outcome, recorded_at=datetime.now(UTC) - age)


SAMPLES = [
    _outcome("link_down", Severity.HIGH, "192.0.2.11", "Gi1/0/3", timedelta(minutes=1)),
    _outcome("link_up", Severity.INFO, "192.0.2.11", "Gi1/0/3", timedelta(minutes=5)),
    _outcome("bgp_drop", Severity.CRITICAL, "192.0.2.1", "203.0.113.1", timedelta(hours=3)),
    _outcome("link_down", Severity.HIGH, "192.0.2.12", "Gi1/0/4", timedelta(days=2),
             kind=OutcomeKind.ERRORED),
]  # fmt: skip


#: ``SAMPLES``' ages (recorded this long before the test runs).
AGES = [timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=3), timedelta(days=2)]


@pytest.fixture
def store_config(tmp_path: Path) -> Path:
    """A config file whose SQLite store holds ``SAMPLES``, aged relative to now.

    Re-stamped here, not at import: under a long parallel run the test may start
    minutes after the module was imported, and ``--until 2m`` must still see the
    1-minute-old sample as newer.
    """
    now = datetime.now(UTC)
    fresh = [replace(o, recorded_at=now - age) for o, age in zip(SAMPLES, AGES, strict=True)]
    return config_with_outcomes(tmp_path, fresh)


def run_json(
    config: Path, *args: str, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, object]]:
    """Run 'netcortex outcomes --json' and parse its output."""
    assert main(["outcomes", "--config", str(config), "--json", *args]) == 0
    data: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return data


class TestOutcomes:
    def test_json_array_with_design_field_names(
        self, store_config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints every outcome, newest first, with the DESIGN.md field names."""
        rows = run_json(store_config, capsys=capsys)
        assert [r["outcome_id"] for r in rows] == [o.outcome_id for o in SAMPLES]
        assert set(rows[0]) >= DESIGN_FIELDS
        first = rows[0]
        assert (first["handler_id"], first["severity"], first["kind"], first["target"]) == (
            "link_down",
            "high",
            "logged",
            "192.0.2.11|Gi1/0/3",
        )

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--severity", "high"], [0, 3]),
            (["--severity", "high,critical"], [0, 2, 3]),
            (["--severity", "info", "--severity", "CRITICAL"], [1, 2]),
            (["--handler", "link_down"], [0, 3]),
            (["--device", "192.0.2.11"], [0, 1]),
            (["--kind", "errored"], [3]),
            (["--since", "10m"], [0, 1]),
            (["--since", "1d", "--until", "2m"], [1, 2]),
            (["--limit", "2"], [0, 1]),
            (["--handler", "link_down", "--since", "1h", "--severity", "high"], [0]),
            (["--handler", "nobody"], []),
        ],
    )
    def test_filters(
        self,
        store_config: Path,
        args: list[str],
        expected: list[int],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Each filter narrows the result as its help says."""
        rows = run_json(store_config, *args, capsys=capsys)
        assert [r["outcome_id"] for r in rows] == [SAMPLES[i].outcome_id for i in expected]

    def test_table(self, store_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The default output is an aligned table with a header and a count line."""
        assert main(["outcomes", "--config", str(store_config), "--severity", "high"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["TIME", "(UTC)", "SEVERITY", "HANDLER", "KIND", "TARGET",
                                    "SUMMARY"]  # fmt: skip
        assert len(lines) == 4
        assert "192.0.2.11|Gi1/0/3" in lines[1]
        assert "Gi1/0/3 on 192.0.2.11 went down" in lines[1]
        # Columns line up: every row has its target where the header's TARGET starts.
        col = lines[0].index("TARGET")
        assert lines[1][col:].startswith("192.0.2.11|Gi1/0/3")
        assert lines[2][col:].startswith("192.0.2.12|Gi1/0/4")
        assert lines[-1] == "2 outcomes, newest first"

    def test_limit_reached_is_said(
        self, store_config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """When the limit cuts the list, the count line says so."""
        assert main(["outcomes", "--config", str(store_config), "--limit", "1"]) == 0
        assert "limit 1 reached" in capsys.readouterr().out.splitlines()[-1]

    def test_empty_result(self, store_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No match prints just the count line."""
        assert main(["outcomes", "--config", str(store_config), "--device", "10.9.9.9"]) == 0
        assert capsys.readouterr().out == "0 outcomes, newest first\n"

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (["--since", "soon"], "invalid time 'soon'"),
            (["--severity", "urgent"], "invalid severity 'urgent'"),
            (["--kind", "logged,maybe"], "invalid kind 'maybe'"),
            (["--limit", "0"], "invalid --limit 0"),
            (["--since", "1m", "--until", "1h"], "--since must be earlier"),
        ],
    )
    def test_bad_filter_values(
        self,
        store_config: Path,
        args: list[str],
        fragment: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Bad filter values exit 2 with a message saying what is accepted."""
        assert main(["outcomes", "--config", str(store_config), *args]) == 2
        assert fragment in capsys.readouterr().err

    def test_missing_store(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a store file the command says where it looked and exits 1."""
        path = tmp_path / "netcortex.yaml"
        path.write_text(f"store:\n  sqlite_path: {tmp_path / 'none.db'}\n", encoding="utf-8")
        assert main(["outcomes", "--config", str(path)]) == 1
        err = capsys.readouterr().err
        assert "none.db" in err
        assert "store.sqlite_path" in err

    def test_render_table_collapses_whitespace(self) -> None:
        """Multi-line summaries stay on one table row."""
        outcome = replace(SAMPLES[0], summary="line one\nline two")
        assert render_table([outcome]).splitlines()[1].endswith("line one line two")


class TestExport:
    """``netcortex outcomes --export FILE``: every match as JSON lines, paged through the store."""

    @pytest.fixture
    def many(self, tmp_path: Path) -> tuple[Path, list[ReflexOutcome]]:
        """A store with 11 outcomes (three share one recorded_at), newest first."""
        now = datetime.now(UTC)
        made = [
            replace(
                _outcome("link_down", Severity.HIGH if n % 2 else Severity.INFO, "192.0.2.11",
                         f"Gi1/0/{n}", timedelta(0)),
                recorded_at=now - timedelta(minutes=min(n, 8)),
            )
            for n in range(11)
        ]  # fmt: skip
        newest_first = sorted(made, key=lambda o: (o.recorded_at, o.outcome_id), reverse=True)
        return config_with_outcomes(tmp_path, made), newest_first

    def test_exports_all_pages_ignoring_limit(
        self,
        many: tuple[Path, list[ReflexOutcome]],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Every outcome is written once, newest first, across pages; --limit is ignored."""
        config, expected = many
        monkeypatch.setattr(cli, "EXPORT_PAGE_SIZE", 3)  # 11 outcomes: four pages
        target = tmp_path / "archive.jsonl"
        argv = ["outcomes", "--config", str(config), "--export", str(target), "--limit", "2"]
        assert main(argv) == 0
        assert capsys.readouterr().out == f"exported 11 outcomes to {target}\n"
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        assert [r["outcome_id"] for r in rows] == [o.outcome_id for o in expected]
        assert set(rows[0]) >= DESIGN_FIELDS

    def test_filters_apply(
        self,
        many: tuple[Path, list[ReflexOutcome]],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The filters narrow the export like the listing."""
        config, expected = many
        monkeypatch.setattr(cli, "EXPORT_PAGE_SIZE", 2)
        target = tmp_path / "high.jsonl"
        argv = ["outcomes", "-c", str(config), "--severity", "high", "--export", str(target)]
        assert main(argv) == 0
        high = [o.outcome_id for o in expected if o.severity is Severity.HIGH]
        assert capsys.readouterr().out == f"exported {len(high)} outcomes to {target}\n"
        lines = target.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["outcome_id"] for line in lines] == high

    def test_dash_is_stdout(
        self,
        many: tuple[Path, list[ReflexOutcome]],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """'-' writes the JSON lines to stdout and the summary to stderr."""
        config, expected = many
        monkeypatch.setattr(cli, "EXPORT_PAGE_SIZE", 4)
        assert main(["outcomes", "--config", str(config), "--export", "-"]) == 0
        captured = capsys.readouterr()
        ids = [json.loads(line)["outcome_id"] for line in captured.out.splitlines()]
        assert ids == [o.outcome_id for o in expected]
        assert captured.err.strip().endswith("exported 11 outcomes to -")

    def test_unwritable_target_exits_1(
        self,
        many: tuple[Path, list[ReflexOutcome]],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A target that cannot be written exits 1 and names it."""
        config, _ = many
        target = tmp_path / "missing-dir" / "out.jsonl"
        assert main(["outcomes", "--config", str(config), "--export", str(target)]) == 1
        assert f"cannot write {target}" in capsys.readouterr().err

    def test_json_and_export_are_exclusive(self, many: tuple[Path, list[ReflexOutcome]]) -> None:
        """--json and --export together are a usage error."""
        config, _ = many
        with pytest.raises(SystemExit) as info:
            main(["outcomes", "--config", str(config), "--json", "--export", "-"])
        assert info.value.code == 2


class TestDbUpgrade:
    def test_sqlite_store_is_created_and_reports_its_version(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """db upgrade creates the SQLite store with its schema and says which version."""
        from netcortex.memory.episodic.sqlite import SCHEMA_VERSION

        db = tmp_path / "var" / "o.db"
        config = tmp_path / "c.yaml"
        config.write_text(f"store: {{sqlite_path: '{db}'}}\n", encoding="utf-8")
        for _ in range(2):  # safe to repeat
            assert main(["db", "upgrade", "--config", str(config)]) == 0
            out = capsys.readouterr().out
            assert f"sqlite {db}, schema version {SCHEMA_VERSION}" in out
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"incidents", "incident_members"} <= tables  # issue 8: beside the outcomes

    def test_postgres_schema_is_migrated_and_the_password_not_printed(
        self,
        tmp_path: Path,
        postgres_dsn: str,
        postgres_schema: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """db upgrade on store.backend postgres creates the schema's tables; the DSN is
        shown without credentials."""
        from netcortex.memory.episodic.postgres import SCHEMA_VERSION

        config = tmp_path / "c.yaml"
        config.write_text(
            f"store: {{backend: postgres, postgres_dsn: '{postgres_dsn}', "
            f"postgres_schema: {postgres_schema}}}\n",
            encoding="utf-8",
        )
        for _ in range(2):  # safe to repeat
            assert main(["db", "upgrade", "--config", str(config)]) == 0
            out = capsys.readouterr().out
            assert f"schema {postgres_schema}, schema version {SCHEMA_VERSION}" in out

    def test_unreachable_postgres_exits_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A PostgreSQL that does not answer: exit 1 with the reason, no password shown."""
        config = tmp_path / "c.yaml"
        config.write_text(
            "store: {backend: postgres, postgres_dsn: "
            "'postgresql://u:hunter22@127.0.0.1:1/x?connect_timeout=2'}\n",
            encoding="utf-8",
        )
        assert main(["db", "upgrade", "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert "netcortex db upgrade:" in err
        assert "hunter22" not in err
