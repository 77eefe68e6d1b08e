"""Unit tests for ``netcortex.logs``: the structlog chain, redaction, renderers, RejectionLog."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.config import LogConfig
from netcortex.logs import REDACTED, RejectionLog, configure_logging, redact_secrets, redact_url


class TTYStream(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        """Pretend to be a TTY."""
        return True


pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Parse every JSON line written to ``stream``."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def configured(level: str = "info", fmt: str = "auto") -> tuple[io.StringIO, Any]:
    """Configure logging into a fresh StringIO and return it with a new logger."""
    stream = io.StringIO()
    configure_logging(LogConfig(level=level, format=fmt), stream=stream)  # type: ignore[arg-type]
    return stream, structlog.get_logger("test")


class TestRendering:
    def test_json_lines_when_not_a_tty(self) -> None:
        """Off a terminal each event is one JSON object with event, level and a UTC timestamp."""
        stream, log = configured()
        log.info("listening", listener="trap", host="127.0.0.1", port=1162)
        (line,) = lines(stream)
        assert line["event"] == "listening"
        assert line["level"] == "info"
        assert (line["listener"], line["host"], line["port"]) == ("trap", "127.0.0.1", 1162)
        stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)

    def test_console_renderer_on_a_tty(self) -> None:
        """On a terminal the console renderer is used (not JSON)."""
        stream = TTYStream()
        configure_logging(LogConfig(), stream=stream)
        structlog.get_logger("test").info("engine_started", bus="memory")
        text = stream.getvalue()
        assert "engine_started" in text
        assert "bus" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text.splitlines()[0])

    def test_format_json_forces_json_on_a_tty(self) -> None:
        """format=json renders JSON even on a terminal."""
        stream = TTYStream()
        configure_logging(LogConfig(format="json"), stream=stream)
        structlog.get_logger("test").info("engine_started")
        assert json.loads(stream.getvalue())["event"] == "engine_started"

    def test_level_filter(self) -> None:
        """Events below the configured level are dropped; at debug they are kept."""
        stream, log = configured("warning")
        log.info("quiet")
        log.warning("loud")
        assert [e["event"] for e in lines(stream)] == ["loud"]
        stream, log = configured("debug")
        log.debug("detail")
        assert [e["event"] for e in lines(stream)] == ["detail"]

    def test_contextvars_are_merged(self) -> None:
        """Values bound with contextvars at the edge reach downstream lines."""
        stream, log = configured()
        structlog.contextvars.bind_contextvars(source="snmp.trap", agent="192.0.2.11")
        log.info("trap_rejected", reason="bad_community")
        (line,) = lines(stream)
        assert (line["source"], line["agent"], line["reason"]) == (
            "snmp.trap",
            "192.0.2.11",
            "bad_community",
        )

    def test_exceptions_rendered_into_json(self) -> None:
        """log.exception puts the traceback into the JSON line."""
        stream, log = configured()
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("handler_failed")
        (line,) = lines(stream)
        assert "ValueError: boom" in line["exception"]

    def test_stdlib_records_share_the_format(self) -> None:
        """Library warnings through stdlib logging come out as JSON with the logger name."""
        stream, _ = configured()
        logging.getLogger("nats.aio.client").warning("reconnecting to %s", "nats://x")
        logging.getLogger("nats.aio.client").info("chatty")  # below WARNING: dropped
        (line,) = lines(stream)
        assert (line["event"], line["level"], line["logger"]) == (
            "reconnecting to nats://x",
            "warning",
            "nats.aio.client",
        )


class TestRedaction:
    @pytest.mark.parametrize(
        "key",
        ["community", "communities", "auth_key", "priv_key", "password", "secret",
         "shared_secret", "token", "authorization", "Authorization", "netbox_token",
         "db_password", "X-Api-Key", "meraki_api_key", "apikey", "private_key",
         "ssh_private_key"],
    )  # fmt: skip
    def test_secret_keys_are_redacted_in_output(self, key: str) -> None:
        """Known secret keys never reach the rendered line."""
        stream, log = configured()
        log.info("config_loaded", **{key: "hunter2-secret"})
        assert "hunter2-secret" not in stream.getvalue()
        assert lines(stream)[0][key] == REDACTED

    def test_nested_values_and_secretstr(self) -> None:
        """Secrets inside dicts and lists, and any SecretStr, are redacted; other data stays."""
        stream, log = configured()
        log.info(
            "v3_user_loaded",
            user={"user": "netcortex", "auth_key": "netcortex-auth-01", "level": "authPriv"},
            communities_seen=[SecretStr("public")],
            fact_key="link_down|r1|Gi1/0/3",
            key=SecretStr("x" * 8),
        )
        text = stream.getvalue()
        assert "netcortex-auth-01" not in text
        assert "public" not in text
        line = lines(stream)[0]
        assert line["user"] == {"user": "netcortex", "auth_key": REDACTED, "level": "authPriv"}
        assert line["communities_seen"] == [REDACTED]
        assert line["fact_key"] == "link_down|r1|Gi1/0/3"
        assert line["key"] == REDACTED

    def test_counts_under_secret_keys_are_kept(self) -> None:
        """A number under a secret-sounding key (a count) is not redacted."""
        stream, log = configured()
        log.info("trap_receiver_started", communities=2, community=["public"])
        line = lines(stream)[0]
        assert (line["communities"], line["community"]) == (2, REDACTED)

    def test_processor_leaves_plain_events_untouched(self) -> None:
        """Events without secrets pass through the processor unchanged."""
        event = {"event": "outcome_recorded", "severity": "high", "details": {"ifIndex": 3}}
        assert redact_secrets(None, "info", dict(event)) == event

    def test_works_with_capture_logs(self) -> None:
        """The redaction processor can run under capture_logs, as tests assert on dicts."""
        with capture_logs(processors=[redact_secrets]) as captured:
            structlog.get_logger("test").warning("trap_rejected", community="private")
        assert captured == [
            {"event": "trap_rejected", "community": REDACTED, "log_level": "warning"}
        ]


class TestRedactUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("nats://alice:s3cret@10.0.0.1:4222", f"nats://{REDACTED}@10.0.0.1:4222"),
            ("nats://t0ken@nats.example", f"nats://{REDACTED}@nats.example"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("tls://u:p@[::1]:4222", f"tls://{REDACTED}@[::1]:4222"),
        ],
    )
    def test_user_info_is_redacted(self, url: str, expected: str) -> None:
        """A URL's user-info (user:password or a token) is redacted; the rest is kept."""
        assert redact_url(url) == expected


class FakeClock:
    """A monotonic clock the test moves by hand (``RejectionLog``'s time seam)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """A logger that keeps what ``RejectionLog`` writes: ``(event, fields)`` per line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, /, **fields: Any) -> None:
        self.lines.append((event, fields))

    def pairs(self) -> list[tuple[str, str, int]]:
        """``(who, reason, suppressed)`` of each line, in order."""
        return [(f["agent"], f["reason"], f["suppressed"]) for _, f in self.lines]


def rejection_log(
    new_pairs: int | None = 100, max_keys: int = 10_000
) -> tuple[RejectionLog, Lines, FakeClock]:
    """A ``RejectionLog`` (10 s interval, ``agent`` field) with its lines and clock."""
    lines, clock = Lines(), FakeClock()
    limiter = RejectionLog(
        lines,
        "trap_rejected",
        who_field="agent",
        interval=10.0,
        new_pairs=new_pairs,
        max_keys=max_keys,
        clock=clock,
    )
    return limiter, lines, clock


class TestRejectionLog:
    def test_one_line_per_pair_per_interval_with_the_suppressed_count(self) -> None:
        """Repeats within the interval are counted; the next line carries the count."""
        limiter, lines, clock = rejection_log()
        assert limiter.reject("10.0.0.1", "malformed", detail="bad BER") is True
        for _ in range(4):
            clock.now += 2.0
            assert limiter.reject("10.0.0.1", "malformed", detail="bad BER") is False
        clock.now += 2.0  # 10 s after the first line
        assert limiter.reject("10.0.0.1", "malformed", detail="again") is True
        clock.now += 9.9
        assert limiter.reject("10.0.0.1", "malformed", detail="again") is False
        clock.now += 0.1
        limiter.reject("10.0.0.1", "malformed", detail="again")
        assert lines.pairs() == [
            ("10.0.0.1", "malformed", 0),
            ("10.0.0.1", "malformed", 4),
            ("10.0.0.1", "malformed", 1),
        ]
        assert lines.lines[1] == (
            "trap_rejected",
            {"agent": "10.0.0.1", "reason": "malformed", "detail": "again", "suppressed": 4},
        )

    def test_each_sender_and_reason_is_its_own_pair(self) -> None:
        """Another sender or another reason logs at once, whatever the first pair did."""
        limiter, lines, _clock = rejection_log()
        for who, reason in [("a", "malformed"), ("a", "malformed"), ("b", "malformed")]:
            limiter.reject(who, reason)
        limiter.reject("a", "bad_community")
        assert lines.pairs() == [
            ("a", "malformed", 0),
            ("b", "malformed", 0),
            ("a", "bad_community", 0),
        ]

    def test_new_pairs_past_the_budget_are_summed_per_reason_at_flush(self) -> None:
        """Past ``new_pairs`` new pairs per interval, one ``"*"`` line per reason sums the rest."""
        limiter, lines, _clock = rejection_log(new_pairs=2)
        for i in range(5):
            limiter.reject(f"10.0.0.{i}", "malformed", detail="x")
        assert limiter.reject("10.0.0.9", "unknown_source") is False
        assert limiter.reject("10.0.0.0", "malformed") is False  # a known pair: rate-limited
        assert len(lines.lines) == 2
        limiter.flush()
        event, summary = lines.lines[2]
        assert (event, summary["agent"], summary["reason"], summary["suppressed"]) == (
            "trap_rejected",
            "*",
            "malformed",
            3,
        )
        assert summary["detail"] == ("more than 2 new senders in 10 s; their lines are summed here")
        assert lines.pairs()[3:] == [("*", "unknown_source", 1)]
        limiter.flush()
        assert len(lines.lines) == 4  # nothing left to sum

    def test_the_next_interval_sums_the_last_and_opens_a_new_budget(self) -> None:
        """The first new pair after the interval writes the sums, then logs on a new budget."""
        limiter, lines, clock = rejection_log(new_pairs=1)
        limiter.reject("a", "malformed")
        limiter.reject("b", "malformed")
        clock.now += 9.0
        limiter.reject("c", "malformed")
        assert lines.pairs() == [("a", "malformed", 0)]
        clock.now += 1.0
        assert limiter.reject("d", "malformed") is True
        assert lines.pairs() == [
            ("a", "malformed", 0),
            ("*", "malformed", 2),
            ("d", "malformed", 0),
        ]
        assert limiter.reject("e", "malformed") is False  # the new budget of one is spent

    def test_no_budget_logs_every_new_pair(self) -> None:
        """With ``new_pairs=None`` every new pair logs and nothing is ever summed."""
        limiter, lines, _clock = rejection_log(new_pairs=None)
        for i in range(300):
            assert limiter.reject(f"peer-{i}", "bad_token") is True
        limiter.flush()
        assert len(lines.lines) == 300
        assert all(f["agent"] != "*" for _, f in lines.lines)

    def test_memory_is_bounded_by_max_keys(self) -> None:
        """When ``max_keys`` pairs are remembered they are all forgotten and log again."""
        limiter, lines, _clock = rejection_log(new_pairs=None, max_keys=3)
        for who in ["a", "b", "c", "a"]:
            limiter.reject(who, "malformed")
        assert [p[0] for p in lines.pairs()] == ["a", "b", "c"]  # "a" still remembered
        limiter.reject("d", "malformed")  # the fourth pair: memory is cleared first
        limiter.reject("a", "malformed")
        assert [p[0] for p in lines.pairs()] == ["a", "b", "c", "d", "a"]

    @pytest.mark.parametrize(
        "kwargs",
        [{"interval": -1.0}, {"new_pairs": -1}, {"max_keys": 0}, {"interval": float("nan")}],
    )
    def test_nonsense_limits_are_refused(self, kwargs: dict[str, Any]) -> None:
        """A negative interval or budget, or no memory at all, is a ValueError."""
        with pytest.raises(ValueError, match="must be"):
            RejectionLog(Lines(), "x_rejected", who_field="peer", **kwargs)

    def test_lines_reach_structlog_under_the_callers_event_and_field_names(self) -> None:
        """Through a real structlog logger a line has the event, the sender field and level."""
        limiter = RejectionLog(
            structlog.get_logger("test"), "api_auth_rejected", who_field="peer", new_pairs=None
        )
        with capture_logs() as captured:
            limiter.reject("192.0.2.7", "bad_token", method="GET", path="/api/v1/outcomes")
            limiter.reject("192.0.2.7", "bad_token", method="GET", path="/api/v1/outcomes")
        assert captured == [
            {
                "event": "api_auth_rejected",
                "peer": "192.0.2.7",
                "reason": "bad_token",
                "method": "GET",
                "path": "/api/v1/outcomes",
                "suppressed": 0,
                "log_level": "warning",
            }
        ]


# -- the hot path: remembered key verdicts, one JSON encoder (issue 10, performance) --


def test_key_verdicts_are_remembered_but_bounded() -> None:
    """``redact_secrets`` remembers whether a key is secret, but at most ``_VERDICTS_MAX``
    keys (a flood of distinct keys cannot grow it), and still redacts after forgetting."""
    from netcortex import logs

    for i in range(logs._VERDICTS_MAX + 10):
        redact_secrets(None, "info", {f"field_{i}": "x"})
        assert len(logs._verdicts) <= logs._VERDICTS_MAX
    assert logs._verdicts  # kept some: the cache is in use
    for _ in range(2):  # the second time from the cache
        out = redact_secrets(None, "info", {"db_password": "pw", "Auth-Key": "k", "summary": "s"})
        assert out == {"db_password": REDACTED, "Auth-Key": REDACTED, "summary": "s"}
    assert logs._verdicts["db_password"] is True
    assert logs._verdicts["summary"] is False


def test_plain_values_pass_and_containers_are_still_scrubbed() -> None:
    """Skipping plain values early leaves containers and ``SecretStr`` under ordinary keys
    scrubbed as before, and numbers under secret keys untouched."""
    out = redact_secrets(
        None,
        "info",
        {
            "n": 1,
            "none": None,
            "flag": True,
            "text": "token",
            "communities": 2,
            "nested": {"token": "t", "ok": [1, {"password": "p"}]},
            "s": SecretStr("x"),
            "pair": ("a", {"secret": "z"}),
        },
    )
    assert out == {
        "n": 1,
        "none": None,
        "flag": True,
        "text": "token",
        "communities": 2,
        "nested": {"token": REDACTED, "ok": [1, {"password": REDACTED}]},
        "s": REDACTED,
        "pair": ("a", {"secret": REDACTED}),
    }


def test_json_lines_are_what_json_dumps_writes() -> None:
    """The JSON renderer's reused encoder writes exactly what ``json.dumps`` with
    structlog's fallback writes: ASCII escapes, default separators, ``repr`` for
    unknown objects, ``__structlog__`` when an object has it."""

    class Odd:
        def __repr__(self) -> str:
            return "<odd é>"

    class Own:
        def __structlog__(self) -> str:
            return "own-form"

    stream, log = configured(fmt="json")
    log.info("ünïcode", odd=Odd(), own=Own(), f=1.5, t=(1, "a"), nested={"k": [None, True]})
    log.info("second", n=2)
    raw = stream.getvalue().splitlines()
    assert len(raw) == 2
    first = json.loads(raw[0])
    assert (first["odd"], first["own"], first["t"]) == ("<odd é>", "own-form", [1, "a"])
    expected = dict(first)
    expected["odd"], expected["own"] = Odd(), Own()
    assert raw[0] == json.dumps(
        expected, default=lambda o: getattr(o, "__structlog__", o.__repr__)()
    )
    assert json.loads(raw[1])["event"] == "second"
