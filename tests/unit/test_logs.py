"""Unit tests for ``netcortex.logs``: the structlog chain, redaction and renderers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.config import LogConfig
from netcortex.logs import REDACTED, configure_logging, redact_secrets, redact_url


class TTYStream(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        """Pretend to be a TTY."""
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put structlog's and the stdlib root logger's configuration back after each test."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.contextvars.clear_contextvars()
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


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
         "db_password"],
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
