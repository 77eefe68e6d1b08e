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
few dict operations plus the renderer. The chain is on the hot path (one
``outcome_recorded`` line per outcome), so ``redact_secrets`` remembers its
verdict per key and skips plain values at once, and the JSON renderer reuses
one encoder (the same output as ``json.dumps``): ~40 % less CPU per line
(``benchmarks/bench_logs.py``; docs/PERFORMANCE.md, "Scale-out").

``RejectionLog`` rate-limits the warning lines a receiver writes for refused
inputs (one per sender and reason per interval, a budget of new senders per
interval), so a flood of bad input cannot flood the logs.

Imports: stdlib, structlog, pydantic, ``netcortex.config``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from netcortex.config import LogConfig

__all__ = [
    "REDACTED",
    "SECRET_KEYS",
    "RejectionLog",
    "configure_logging",
    "redact_secrets",
    "redact_url",
]

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
        "apikey",
        "private_key",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_cisco_meraki_shared_secret",
    }
)
#: Suffixes that mark a key as secret too (``netbox_token``, ``db_password``,
#: ``X-Api-Key`` ...); not a bare ``_key``: ``dedup_key`` and ``fact_key`` are not.
_SECRET_SUFFIXES = (
    "_password",
    "_secret",
    "_token",
    "_passphrase",
    "_community",
    "_api_key",
    "_private_key",
)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_MAX_DEPTH = 6

#: ``_is_secret_key``'s verdicts by key (log keys are a small vocabulary); emptied
#: when it reaches ``_VERDICTS_MAX`` keys, so arbitrary keys cannot grow it.
_verdicts: dict[str, bool] = {}
_VERDICTS_MAX = 4096
#: Value types that hold no secret of their own (a ``str`` only under a secret key).
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})


def _is_secret_key(key: object) -> bool:
    if type(key) is str:
        verdict = _verdicts.get(key)
        if verdict is None:
            if len(_verdicts) >= _VERDICTS_MAX:
                _verdicts.clear()
            verdict = _verdicts[key] = _secret_name(key)
        return verdict
    return isinstance(key, str) and _secret_name(key)


def _secret_name(key: str) -> bool:
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
        if _is_secret_key(key):
            if _redactable(value):
                event_dict[key] = REDACTED
        elif type(value) in _PLAIN:
            continue
        elif isinstance(value, SecretStr | SecretBytes | Mapping | list | tuple):
            event_dict[key] = _scrub(value, 0)
    return event_dict


class _JsonDumps:
    """``json.dumps(obj, default=default)`` with the encoder built once, not per line.

    ``json.dumps`` builds an identical ``JSONEncoder`` on every call (its default
    settings, this ``default``), so the output is the same; the encoder keeps no
    state between calls.
    """

    def __init__(self) -> None:
        self._default: Callable[[Any], Any] | None = None
        self._encode: Callable[[Any], str] = json.JSONEncoder().encode

    def __call__(self, obj: Any, *, default: Callable[[Any], Any]) -> str:
        if default is not self._default:
            self._encode = json.JSONEncoder(default=default).encode
            self._default = default
        return self._encode(obj)


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
        renderer = structlog.processors.JSONRenderer(serializer=_JsonDumps())
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


class _Warns(Protocol):
    """What ``RejectionLog`` writes to: a structlog logger's ``warning``."""

    def warning(self, event: str, /, **fields: Any) -> Any: ...


class RejectionLog:
    """Rate-limited ``warning`` lines for refused inputs, so a flood cannot flood the logs.

    ``reject(who, reason, **fields)`` writes ``event`` with ``<who_field>=who``,
    ``reason``, ``fields`` and ``suppressed`` (the refusals of that pair not
    logged since its previous line) at most once per (who, reason) per
    ``interval`` seconds. At most ``new_pairs`` pairs not seen before start
    logging per interval; refusals from pairs past that budget (many, possibly
    spoofed, senders) are counted per reason and written as one line per reason
    with ``<who_field>="*"`` when the next interval starts (on the next new pair)
    or at ``flush``. At most ``max_keys`` pairs are remembered (all are
    forgotten when full). No I/O but ``logger.warning``, no time but ``clock``.

    Args:
        logger: where lines go (the caller's ``structlog.get_logger(__name__)``).
        event: the event name of every line (``trap_rejected``).
        who_field: the field naming the sender (``agent``, ``peer``).
        interval: seconds between two lines of one (who, reason) pair.
        new_pairs: new pairs that may start logging per interval; ``None`` for
            no budget.
        max_keys: remembered pairs, at most.
        clock: monotonic seconds (tests pass a fake).

    Raises:
        ValueError: ``interval`` < 0, ``new_pairs`` < 0 or ``max_keys`` < 1.
    """

    __slots__ = (
        "_clock",
        "_event",
        "_interval",
        "_logger",
        "_max_keys",
        "_new_in_window",
        "_new_pairs",
        "_overflow",
        "_seen",
        "_who_field",
        "_window_start",
    )

    def __init__(
        self,
        logger: _Warns,
        event: str,
        *,
        who_field: str,
        interval: float = 10.0,
        new_pairs: int | None = 100,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval >= 0:
            raise ValueError("interval must be >= 0 seconds")
        if new_pairs is not None and new_pairs < 0:
            raise ValueError("new_pairs must be >= 0")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._logger = logger
        self._event = event
        self._who_field = who_field
        self._interval = interval
        self._new_pairs = new_pairs
        self._max_keys = max_keys
        self._clock = clock
        # (who, reason) -> (when its last line was written, refusals since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._window_start = clock()
        self._new_in_window = 0
        self._overflow: dict[str, int] = {}  # reason -> refusals past the budget

    def reject(self, who: str, reason: str, /, **fields: Any) -> bool:
        """Note one refusal; write its line unless the limits say otherwise.

        Args:
            who: the sender (an address).
            reason: the refusal reason.
            **fields: more fields for the line (``detail`` ...); never secrets.

        Returns:
            Whether a line was written for this refusal.
        """
        key = (who, reason)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            budget = self._new_pairs
            if budget is not None:
                if now - self._window_start >= self._interval:
                    self._flush(now)
                if self._new_in_window >= budget:
                    self._overflow[reason] = self._overflow.get(reason, 0) + 1
                    return False
                self._new_in_window += 1
            if len(self._seen) >= self._max_keys:
                self._seen.clear()
            suppressed = 0
        elif now - seen[0] >= self._interval:
            suppressed = seen[1]
        else:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        self._seen[key] = (now, 0)
        self._logger.warning(
            self._event, **{self._who_field: who}, reason=reason, **fields, suppressed=suppressed
        )
        return True

    def flush(self) -> None:
        """Write the summed ``"*"`` lines now and start a new interval (at ``close``)."""
        self._flush(self._clock())

    def _flush(self, now: float) -> None:
        for reason, count in self._overflow.items():
            self._logger.warning(
                self._event,
                **{self._who_field: "*"},
                reason=reason,
                detail=f"more than {self._new_pairs} new senders in {self._interval:g} s; "
                "their lines are summed here",
                suppressed=count,
            )
        self._overflow.clear()
        self._window_start = now
        self._new_in_window = 0
