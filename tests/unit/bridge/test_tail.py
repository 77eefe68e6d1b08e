"""Unit: ``netcortex tail`` — SSE parsing, line formats, colour rules, exits (issue 9)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from netcortex.bridge import tail as tail_mod
from netcortex.bridge.cli import build_parser
from netcortex.bridge.tail import STYLES, format_message, parse_sse, use_color

OUTCOME = {
    "subject": "reflex.link_down.logged.sw1-north.Gi1%2F0%2F3",
    "outcome": {
        "outcome_id": "o1",
        "handler_id": "link_down",
        "kind": "logged",
        "severity": "critical",
        "target": "sw1-north|Gi1/0/3",
        "site": "dc-north",
        "summary": "Link down on sw1-north Gi1/0/3",
        "recorded_at": "2026-11-28T12:34:56.789+00:00",
    },
}
INCIDENT = {
    "subject": "incident.opened.inc1",
    "transition": "opened",
    "incident": {
        "incident_id": "inc1",
        "rule": "cable_pair",
        "root": "cable:sw1-north|Gi1/0/3~sw2-north|Gi1/0/3",
        "state": "open",
        "severity": "high",
        "summary": "cable cut",
        "members": ["a", "b"],
        "site": "dc-north",
        "updated_at": "2026-11-28T12:35:00+00:00",
    },
}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert use_color(_Tty(), no_color_flag=False, env={})
    assert not use_color(io.StringIO(), no_color_flag=False, env={})
    assert not use_color(_Tty(), no_color_flag=True, env={})
    assert not use_color(_Tty(), no_color_flag=False, env={"NO_COLOR": "1"})
    assert use_color(_Tty(), no_color_flag=False, env={"NO_COLOR": ""})


def test_outcome_lines_are_coloured_by_severity() -> None:
    plain = format_message("outcome", OUTCOME, color=False)
    assert plain == (
        "12:34:56 CRITICAL link_down/logged sw1-north|Gi1/0/3 @dc-north  "
        "Link down on sw1-north Gi1/0/3"
    )
    coloured = format_message("outcome", OUTCOME, color=True)
    assert coloured is not None
    assert STYLES["critical"] in coloured
    assert "\x1b[0m" in coloured
    for severity in ("info", "warn", "high"):
        body = {**OUTCOME, "outcome": {**OUTCOME["outcome"], "severity": severity}}  # type: ignore[dict-item]
        line = format_message("outcome", body, color=True)
        assert line is not None
        assert STYLES[severity] in line
    assert "\x1b[" not in plain


def test_incidents_are_shown_distinctly() -> None:
    plain = format_message("incident", INCIDENT, color=False)
    assert plain is not None
    assert "INCIDENT opened [HIGH] cable_pair" in plain
    assert "(2 members, open)" in plain
    assert "id=inc1" in plain
    coloured = format_message("incident", INCIDENT, color=True)
    assert coloured is not None
    assert STYLES["incident"] in coloured
    assert format_message("ready", {"resumed": 0}, color=False) is None


def test_parse_sse_skips_comments_and_retry() -> None:
    lines = iter(
        [
            "retry: 2000",
            "",
            ": keep-alive",
            "",
            "id: abc",
            "event: outcome",
            'data: {"a": 1}',
            "",
            "event: ready",
            "data:{}",
            "",
        ]
    )
    got = list(parse_sse(lines))
    assert [(m.event, m.id, m.json()) for m in got] == [
        ("outcome", "abc", {"a": 1}),
        ("ready", None, {}),
    ]


def _sse(*messages: tuple[str, str | None, dict[str, Any]]) -> bytes:
    out = b"retry: 2000\n\n"
    for event, ident, data in messages:
        if ident:
            out += f"id: {ident}\n".encode()
        out += f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
    return out


def test_json_mode_resumes_with_the_last_id_after_a_drop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One JSON line per message; a drop is resumed with Last-Event-ID after a back-off
    (noted on stderr); a refused token ends it with exit 2."""
    seen: list[dict[str, str]] = []
    answers = [
        httpx.Response(
            200, content=_sse(("ready", None, {"resumed": 0}), ("outcome", "id1", OUTCOME))
        ),
        httpx.Response(
            200, content=_sse(("ready", None, {"resumed": 0}), ("incident", "id2", INCIDENT))
        ),
        httpx.Response(401, json={"detail": "invalid bearer token"}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        return answers[len(seen) - 1]

    out, err = io.StringIO(), io.StringIO()
    sleeps: list[float] = []
    runner = tail_mod._Tail(
        "http://engine",
        "t" * 20,
        [("severity", "high")],
        as_json=True,
        color=False,
        out=out,
        err=err,
        sleep=sleeps.append,
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert runner.run(client) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(m["event"], m["id"]) for m in lines] == [("outcome", "id1"), ("incident", "id2")]
    assert lines[0]["outcome"]["outcome_id"] == "o1"
    assert "last-event-id" not in seen[0]
    assert seen[1]["last-event-id"] == "id1"
    assert seen[2]["last-event-id"] == "id2"
    assert seen[0]["authorization"] == "Bearer " + "t" * 20
    assert sleeps == [1.0, 1.0]  # each connection got live (ready): the back-off restarts
    assert "refused the API token" in err.getvalue()
    assert "reconnecting" in err.getvalue()


def test_tail_is_a_cli_command() -> None:
    args = build_parser().parse_args(
        ["tail", "--json", "--subject", "incident.>", "--subject", "reflex.>", "--no-color"]
    )
    assert args.func is tail_mod.cmd_tail
    assert args.subject == ["incident.>", "reflex.>"]
    assert args.json
    assert args.no_color
