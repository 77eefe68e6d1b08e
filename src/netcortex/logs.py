"""Structured logging set-up (structlog), configured once by the CLI / ``app``.

Any region may import this module, but only the composition root calls
``configure_logging``; everything else just does
``log = structlog.get_logger(__name__)`` and logs an event name plus key/values.

The processor chain, in order:

1. ``merge_contextvars`` — context bound at the edge (``source``, ``agent``,
   ``event_id``, ``handler_id`` ...) reaches every downstream line;
2. log level (and the logger name of stdlib records), an ISO-8601 UTC timestamp;
3. exception / stack rendering;
4. ``redact_secrets`` — the last line of defence: values under known secret keys
   (``community``, ``auth_key``, ``password``, ``token`` ...) and any
   ``SecretStr`` become ``"**redacted**"``, at any nesting depth;
5. the renderer: JSON lines when the stream is not a TTY (or ``format: json``),
   structlog's console renderer on a TTY.

Standard-library loggers (asyncio, nats-py) are routed through the same chain so
the output stays one format. Loggers are cached on first use: a log call is a
few dict operations plus the renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from netcortex.config import LogConfig

__all__ = ["REDACTED", "SECRET_KEYS", "configure_logging", "redact_secrets", "redact_url"]

#: What a secret value is replaced with.
REDACTED = "**redacted**"

#: Keys (compared lower-cased, ``-`` as ``_``) whose values never reach a log line.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "community",
        "communities",
        "community_string",
        "snmp_community",
        "auth_key",
        "priv_key",
        "auth_passphrase",
        "priv_passphrase",
        "passphrase",
        "password",
        "passwd",
        "secret",
        "shared_secret",
        "webhook_secret",
        "client_secret",
        "token",
        "api_token",
        "access_token",
        "refresh_token",
        "api_key",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_cisco_meraki_shared_secret",
    }
)
#: Suffixes that mark a key as secret too (``netbox_token``, ``db_password`` ...).
_SECRET_SUFFIXES = ("_password", "_secret", "_token", "_passphrase", "_community")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_MAX_DEPTH = 6


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    k = key.lower().replace("-", "_")
    return k in SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def _redactable(value: Any) -> bool:
    # A count under a secret-sounding key (``communities=2``) is not a secret; anything
    # that could hold one (text, bytes, containers, objects) is.
    return value is not None and not isinstance(value, bool | int | float)


def _scrub(value: Any, depth: int) -> Any:
    """Return ``value`` with secrets redacted; the same object when nothing changed."""
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        changed = False
        out: dict[Any, Any] = {}
        for k, v in value.items():
            new = REDACTED if _is_secret_key(k) and _redactable(v) else _scrub(v, depth + 1)
            changed = changed or new is not v
            out[k] = new
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [_scrub(v, depth + 1) for v in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return type(value)(items) if isinstance(value, tuple) else items
        return value
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace secret values with ``"**redacted**"``.

    A value is secret when its key is one of ``SECRET_KEYS`` (or ends in
    ``_password``, ``_secret``, ``_token`` ...), or when it is a pydantic
    ``SecretStr``/``SecretBytes``, anywhere inside dicts, lists and tuples.
    Numbers under such keys (``communities=2``, a count) are left alone.
    """
    for key, value in event_dict.items():
        if _is_secret_key(key) and _redactable(value):
            event_dict[key] = REDACTED
        elif isinstance(value, SecretStr | SecretBytes | Mapping | list | tuple):
            event_dict[key] = _scrub(value, 0)
    return event_dict


def redact_url(url: str) -> str:
    """``url`` with its user-info (``user:password@`` or a bare ``token@``) redacted.

    For server URLs that go into log lines and messages: ``nats://alice:pw@host:4222``
    becomes ``nats://**redacted**@host:4222``; a URL without credentials is unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED if "@" in url else url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{REDACTED}@{host}").geturl()


def _drop_color_message(_l: WrappedLogger, _m: str, event_dict: EventDict) -> EventDict:
    # uvicorn-style stdlib records carry a duplicate "color_message"; keep lines small.
    event_dict.pop("color_message", None)
    return event_dict


def _add_record_name(_l: WrappedLogger, _m: str, event_dict: EventDict) -> EventDict:
    # Only stdlib records know their logger's name; structlog lines are named by event.
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    return event_dict


def _wants_json(config: LogConfig, stream: TextIO) -> bool:
    if config.format == "json":
        return True
    if config.format == "console":
        return False
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    config: LogConfig, *, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Configure structlog (and route stdlib logging through it) for this process.

    Args:
        config: the ``log`` section (level, format).
        stream: where lines go (default ``sys.stderr``); JSON unless it is a TTY
            or ``config.format`` says otherwise.
        cache: cache each logger on first use (fast; the engine's setting). Short
            CLI commands pass ``False`` so a later reconfiguration still applies.

    Call it once, at start-up, before the first log line; loggers are cached on
    first use for speed, so later calls do not affect loggers already used.
    """
    out = sys.stderr if stream is None else stream
    level = _LEVELS[config.level]
    as_json = _wants_json(config, out)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_record_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=bool(getattr(out, "isatty", bool)()))
    tail: list[Processor] = [_drop_color_message, redact_secrets]

    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=cache,
    )

    # Standard-library records (asyncio, nats-py) get the same chain and format.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, *tail],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_netcortex", False):
            root.removeHandler(old)
    handler._netcortex = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Libraries are chatty at INFO; their warnings and errors are what an operator needs.
    root.setLevel(max(level, logging.WARNING))
