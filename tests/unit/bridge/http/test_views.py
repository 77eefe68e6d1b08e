"""Unit tests for ``netcortex.bridge.views`` as the API uses it (the CLI tests cover its
CLI spelling): messages name API parameters, windows are built with API field names."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from netcortex.bridge.cli import main
from netcortex.bridge.views import (
    API_WINDOW_NAMES,
    CLI_QUERY_NAMES,
    UsageError,
    WindowProblems,
    build_window,
    covers,
    outcome_query,
    window_dict,
    window_rows,
)
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeCursor
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.semantic.maintenance import PROBE_BUDGET
from netcortex.testing import make_event
from tests.unit.bridge._helpers import config_with_outcomes

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class TestOutcomeQuery:
    def test_every_filter_reaches_the_query(self) -> None:
        """Each value lands in its OutcomeQuery field; comma lists and repeats combine."""
        cursor = OutcomeCursor(NOW, "abc")
        query = outcome_query(
            since="1h",
            until="now",
            handler="link_down",
            severity=["high,critical", "HIGH"],
            kind=["suppressed"],
            device="ms-west",
            site="branch-west",
            limit=7,
            before=cursor,
            now=NOW,
        )
        assert query.since == NOW - timedelta(hours=1)
        assert query.until == NOW
        assert query.handler_id == "link_down"
        assert query.severity == [Severity.HIGH, Severity.CRITICAL]
        assert query.kind == [OutcomeKind.SUPPRESSED]
        assert (query.device, query.site, query.limit, query.before) == (
            "ms-west",
            "branch-west",
            7,
            cursor,
        )

    def test_empty_values_mean_any(self) -> None:
        """Empty strings and lists are "no filter", not "match nothing"."""
        query = outcome_query(handler="", device="", site="", severity=[""], kind=[])
        assert (query.handler_id, query.device, query.site, query.severity, query.kind) == (
            None,
            None,
            None,
            None,
            None,
        )

    @pytest.mark.parametrize(
        ("kwargs", "param", "fragment"),
        [
            ({"since": "soon"}, "since", "invalid time 'soon'"),
            ({"until": "later"}, "until", "invalid time 'later'"),
            ({"severity": ["urgent"]}, "severity", "invalid severity 'urgent'"),
            ({"kind": ["logged,maybe"]}, "kind", "invalid kind 'maybe'"),
            ({"limit": 0}, "limit", "invalid limit 0"),
            ({"limit": 11, "max_limit": 10}, "limit", "at most 10"),
            ({"since": "1m", "until": "1h"}, "since", "since must be earlier than until"),
        ],
    )
    def test_bad_values_name_the_api_parameter(
        self, kwargs: dict[str, object], param: str, fragment: str
    ) -> None:
        """Without CLI names, messages and ``param`` use the API's parameter names."""
        with pytest.raises(UsageError, match=fragment) as exc:
            outcome_query(now=NOW, **kwargs)  # type: ignore[arg-type]
        assert exc.value.param == param
        assert "--" not in str(exc.value)

    def test_cli_names_are_used_when_given(self) -> None:
        """The CLI passes its option names, and they appear in the message."""
        with pytest.raises(UsageError, match="--since must be earlier than --until"):
            outcome_query(since="1m", until="1h", names=CLI_QUERY_NAMES, now=NOW)


class TestBuildWindow:
    def test_api_fields_build_a_window(self) -> None:
        """A duration in seconds (as text) and a naive start in the zone give the window."""
        window = build_window(
            id="w1",
            scope="device",
            target="ms-west",
            start="2026-07-05T02:00:00",
            duration="3600",
            timezone="Europe/Amsterdam",
            reason="swap",
            names=API_WINDOW_NAMES,
        )
        assert window.start == datetime(2026, 7, 5, 0, 0, tzinfo=UTC)
        assert window.end - window.start == timedelta(hours=1)
        row = window_dict(window, "store", False)
        assert row["start"] == "2026-07-05T02:00:00+02:00"
        assert (row["source"], row["active"], row["reason"]) == ("store", False, "swap")

    def test_every_problem_is_named_by_its_api_field(self) -> None:
        """All problems come at once, each with its field and an API-spelled message."""
        with pytest.raises(WindowProblems) as exc:
            build_window(
                id="w1",
                scope="device",
                target="x",
                start="soon",
                duration="2x",
                timezone="Mars/Olympus",
                names=API_WINDOW_NAMES,
            )
        fields = [f for f, _ in exc.value.problems]
        assert fields == ["timezone", "start", "duration"]
        assert all("--" not in m for _, m in exc.value.problems)
        assert "invalid timezone 'Mars/Olympus'" in exc.value.problems[0][1]

    @pytest.mark.parametrize(("end", "duration"), [(None, None), ("2026-01-01T00:00:00Z", "1h")])
    def test_exactly_one_of_end_and_duration(self, end: str | None, duration: str | None) -> None:
        """Neither or both of end/duration is one problem on ``end``."""
        with pytest.raises(WindowProblems) as exc:
            build_window(
                id="w1",
                scope="device",
                target="x",
                start="now",
                end=end,
                duration=duration,
                names=API_WINDOW_NAMES,
            )
        assert [f for f, _ in exc.value.problems] == ["end"]

    def test_calendar_rules_apply(self) -> None:
        """The calendar's own checks (id token, rrule frequency) are reported too."""
        with pytest.raises(WindowProblems) as exc:
            build_window(
                id="bad id!",
                scope="device",
                target="x",
                start="now",
                duration="1h",
                rrule="FREQ=MINUTELY",
                names=API_WINDOW_NAMES,
            )
        assert sorted(f for f, _ in exc.value.problems) == ["id", "rrule"]

    def test_rows_mark_config_windows_and_activity(self) -> None:
        """window_rows says which windows come from the config and which cover ``at``."""
        a = build_window(id="a", scope="site", target="north", start="now", duration="1h", now=NOW)
        b = build_window(
            id="b", scope="tag", target="core", start="2026-03-02T00:00:00Z", duration="1h"
        )
        rows = window_rows([a, b], {"a"}, NOW + timedelta(minutes=5))
        assert [(r["id"], r["source"], r["active"]) for r in rows] == [
            ("a", "config", True),
            ("b", "store", False),
        ]


class TestRecurrenceCost:
    """Rules the calendar would evaluate slowly (in the engine's loop) are refused up front.

    Without the guard the API stored them and the engine stalled (INTERVAL=0 hung it
    for good). INTERVAL/COUNT below 1 are refused by the calendar's cheap rule check
    (``window_problems``); the rest by its ``recurrence_problems`` (tested on its own
    in tests/unit/memory/test_maintenance.py).
    """

    @staticmethod
    def build(rrule: str, start: str = "now", **fields: str) -> Exception | None:
        """build_window with ``rrule`` (1 h windows, device ms-west); the error, if any."""
        try:
            build_window(
                id="r",
                scope="device",
                target="ms-west",
                start=start,
                duration=fields.pop("duration", "1h"),
                rrule=rrule,
                names=API_WINDOW_NAMES,
                now=NOW,
                **fields,
            )
        except WindowProblems as exc:
            return exc
        return None

    @pytest.mark.parametrize(
        ("rrule", "start", "field", "words"),
        [
            # the same instant forever: the calendar's table grows until memory runs out
            ("FREQ=DAILY;INTERVAL=0", "now", "rrule", "INTERVAL=0"),
            ("FREQ=DAILY;COUNT=0", "now", "rrule", "COUNT=0"),
            ("FREQ=DAILY;COUNT=-1", "now", "rrule", "COUNT=-1"),
            # "hourly or coarser", dodged with BYMINUTE / BYSECOND lists
            ("FREQ=HOURLY;BYMINUTE=0,1,2", "now", "rrule", "less than an hour apart"),
            ("FREQ=DAILY;BYHOUR=3;BYSECOND=0,30", "now", "rrule", "less than an hour apart"),
            # 17 million hourly occurrences to walk on the first lookup (~35 s, ~1 GB)
            ("FREQ=HOURLY", "0001-01-01T00:00:00", "start", "occurrences"),
            ("FREQ=DAILY;BYHOUR=0,2,4,6,8,10,12,14,16,18,20,22", "2020-01-01T00:00:00",
             "start", "occurrences"),
            # never matches: the next-occurrence search walks to year 9999 (~5 s a lookup)
            # (refused by the time budget, or — on a fast machine — by the horizon)
            ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "now", "rrule", "ever match|no occurrence"),
            ("FREQ=HOURLY;BYYEARDAY=366;BYMONTHDAY=1", "now", "rrule",
             "ever match|no occurrence"),
            # matches, but not within ten years
            ("FREQ=YEARLY;INTERVAL=50", "2025-01-01T00:00:00", "rrule", "no occurrence"),
        ],
    )  # fmt: skip
    @pytest.mark.timeout(30)  # INTERVAL=0 would hang an unguarded evaluation: fail, never hang
    def test_expensive_rules_are_refused_quickly(
        self, rrule: str, start: str, field: str, words: str
    ) -> None:
        """Each is refused, on the named field, and the check itself takes no time."""
        t0 = time.perf_counter()
        error = self.build(rrule, start, duration="60")
        elapsed = time.perf_counter() - t0
        assert isinstance(error, WindowProblems), rrule
        assert [(f, bool(re.search(words, m))) for f, m in error.problems] == [(field, True)], (
            error.problems
        )
        assert elapsed < PROBE_BUDGET + 1.0

    @pytest.mark.parametrize(
        ("rrule", "start"),
        [
            ("FREQ=WEEKLY;BYDAY=SU", "2019-01-06T02:00:00"),
            ("FREQ=DAILY;UNTIL=20260101T000000Z", "2025-01-01T02:00:00"),  # over: fine
            ("FREQ=DAILY;COUNT=3", "2020-01-01T02:00:00"),  # exhausted long ago: fine
            ("FREQ=HOURLY", "now"),
            ("FREQ=DAILY;BYHOUR=1,2,3", "now"),  # exactly an hour apart
            ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "2024-02-29T00:00:00"),  # leap days
            ("FREQ=MONTHLY;BYDAY=1SA", "2000-01-01T00:00:00"),
        ],
    )
    def test_ordinary_rules_pass_and_evaluate_fast(self, rrule: str, start: str) -> None:
        """Real maintenance rules are accepted, and the calendar answers for them at once."""
        assert self.build(rrule, start, duration="30m") is None
        window = build_window(
            id="r", scope="device", target="ms-west", start=start, duration="30m",
            rrule=rrule, now=NOW,
        )  # fmt: skip
        t0 = time.perf_counter()
        covers(window, NOW)
        covers(window, NOW + timedelta(days=400))
        assert time.perf_counter() - t0 < 1.0


@pytest.mark.usefixtures("restore_logging")  # ``main`` configures logging for the process
class TestCliSite:
    """``netcortex outcomes --site`` (the CLI side of the shared ``site`` filter)."""

    def test_site_filters_the_cli_listing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--site`` keeps the outcomes of that site only; an unknown site lists none."""
        made = [
            ReflexOutcome.for_event(
                "link_down",
                make_event("link_down", device=device, interface="Port 1"),
                severity=Severity.HIGH,
                summary="down",
                site=site,
            )
            for device, site in (("ms-west", "branch-west"), ("r1", "dc-north"))
        ]
        config = config_with_outcomes(tmp_path, made)
        capsys.readouterr()  # the store's own log lines
        assert main(["outcomes", "-c", str(config), "--site", "branch-west", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["outcome_id"] for r in rows] == [made[0].outcome_id]
        assert main(["outcomes", "-c", str(config), "--site", "nowhere"]) == 0
        assert capsys.readouterr().out == "0 outcomes, newest first\n"
