"""Bridge: ``netcortex tail`` — the engine's live stream (``GET /api/v1/stream``) in a terminal.

Connects to the engine the config describes (``http.host``/``http.port``, or
``--url``) with its API token (``--token``, else ``NETCORTEX_HTTP__API_TOKEN``,
else ``http.api_token`` of the config), with the stream's filters
(``--subject`` repeatable, ``--severity`` minimum, ``--device``, ``--site``),
and prints one line per message: outcomes coloured by severity, incidents
marked ``INCIDENT`` in bold. Colour is off when stdout is not a terminal, when
``NO_COLOR`` is set (non-empty) or with ``--no-color``. ``--json`` prints each
message as one JSON object per line (``event``, ``id``, then the message's own
fields) for piping.

A dropped connection (server restart, network, ``overflow``) is resumed with
``Last-Event-ID`` after a back-off (1 s doubling to 30 s, reset once live
again), with one note on stderr each time, so nothing is missed or repeated.
Exit status: 0 on Ctrl-C, 2 on a usage problem or when the token is refused.

May import: ``bridge``, ``config``, ``contracts``, httpx.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import httpx

from netcortex.config import Config, load_config
from netcortex.errors import ConfigError

__all__ = [
    "SseMessage",
    "add_tail_parser",
    "cmd_tail",
    "format_message",
    "parse_sse",
    "use_color",
]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
STREAM_PATH: Final = "/api/v1/stream"
TOKEN_ENV: Final = "NETCORTEX_HTTP__API_TOKEN"  # noqa: S105 - a variable name
#: Reconnect back-off (seconds): first wait, doubling up to the cap.
BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 30.0
#: Seconds without a byte (keep-alives come every 15 s) before the connection is
#: considered dead and resumed.
READ_TIMEOUT: Final = 45.0

_RESET: Final = "\x1b[0m"
#: ANSI styles by severity (and for incidents).
STYLES: Final = {
    "info": "\x1b[36m",  # cyan
    "warn": "\x1b[33m",  # yellow
    "high": "\x1b[31m",  # red
    "critical": "\x1b[1;97;41m",  # bold white on red
    "incident": "\x1b[1;35m",  # bold magenta
    "dim": "\x1b[2m",
}


@dataclass(slots=True)
class SseMessage:
    """One Server-Sent Event: ``event`` (default ``message``), ``id`` and ``data``."""

    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)

    def json(self) -> Any:
        """``data`` parsed as JSON (``None`` when there is none or it is not JSON)."""
        try:
            return json.loads("\n".join(self.data)) if self.data else None
        except ValueError:
            return None


def parse_sse(lines: Iterator[str]) -> Iterator[SseMessage]:
    """The events of an SSE line stream (comments and ``retry`` are skipped)."""
    current = SseMessage()
    seen = False
    for line in lines:
        if line == "":
            if seen:
                yield current
            current, seen = SseMessage(), False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event, seen = value, True
        elif name == "data":
            current.data.append(value)
            seen = True
        elif name == "id":
            current.id, seen = value, True


def use_color(stream: TextIO, *, no_color_flag: bool, env: dict[str, str] | None = None) -> bool:
    """ANSI colour only on a terminal, and neither ``--no-color`` nor ``NO_COLOR`` given."""
    environ = os.environ if env is None else env
    if no_color_flag or environ.get("NO_COLOR", ""):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, style: str, color: bool) -> str:
    return f"{STYLES[style]}{text}{_RESET}" if color and style in STYLES else text


def _clock(iso: object) -> str:
    """``HH:MM:SS`` of an ISO 8601 time (as given, in UTC), or blanks."""
    if isinstance(iso, str) and "T" in iso:
        return iso.split("T", 1)[1][:8]
    return "--:--:--"


def format_message(event: str, data: Any, *, color: bool) -> str | None:
    """One human line for a stream message (``None`` for messages not shown)."""
    if not isinstance(data, dict):
        return None
    if event == "outcome":
        o = data.get("outcome") or {}
        severity = str(o.get("severity", "info"))
        sev = _paint(f"{severity.upper():<8}", severity, color)
        target = o.get("target", "")
        site = f" @{o['site']}" if o.get("site") else ""
        return (
            f"{_clock(o.get('recorded_at'))} {sev} {o.get('handler_id', '?')}/"
            f"{o.get('kind', '?')} {target}{site}  {o.get('summary', '')}"
        )
    if event == "incident":
        i = data.get("incident") or {}
        severity = str(i.get("severity", "info"))
        head = _paint(f"INCIDENT {data.get('transition', '?')}", "incident", color)
        sev = _paint(severity.upper(), severity, color)
        members = i.get("members") or []
        site = f" @{i['site']}" if i.get("site") else ""
        return (
            f"{_clock(i.get('updated_at'))} {head} [{sev}] {i.get('rule', '?')} "
            f"{i.get('root', '')}{site} ({len(members)} members, {i.get('state', '?')})  "
            f"{i.get('summary', '')}  id={i.get('incident_id', '?')}"
        )
    return None


class _Refused(Exception):
    """The server refused the request for good (bad token, bad filter)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _base_url(config: Config) -> str:
    host = config.http.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


class _Tail:
    """The connect / print / resume loop."""

    def __init__(
        self,
        url: str,
        token: str,
        params: list[tuple[str, str]],
        *,
        as_json: bool,
        color: bool,
        out: TextIO,
        err: TextIO,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/") + STREAM_PATH
        self.token = token
        self.params = params
        self.as_json = as_json
        self.color = color
        self.out = out
        self.err = err
        self.sleep = sleep
        self.last_id: str | None = None
        self.backoff = BACKOFF_FIRST

    def note(self, text: str) -> None:
        print(f"netcortex tail: {text}", file=self.err, flush=True)

    def run(self, client: httpx.Client) -> int:
        first = True
        while True:
            try:
                self._once(client, first)
                self.note("stream ended by the server; reconnecting")
            except _Refused as exc:
                self.note(str(exc))
                return EXIT_USAGE
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                self.note(f"connection lost ({type(exc).__name__}); reconnecting")
            first = False
            self.note(f"retrying in {self.backoff:g}s (resuming after the last message)")
            self.sleep(self.backoff)
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)

    def _once(self, client: httpx.Client, first: bool) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        params = tuple(self.params)
        with client.stream("GET", self.url, params=params, headers=headers) as resp:
            if resp.status_code in (401, 403):
                resp.read()
                raise _Refused(
                    f"the engine refused the API token ({resp.status_code}: {_detail(resp)}); "
                    f"give the engine's http.api_token with --token or {TOKEN_ENV}"
                )
            if resp.status_code == 400:
                resp.read()
                raise _Refused(f"bad request: {_detail(resp)}")
            if resp.status_code != 200:
                resp.read()
                self.note(f"the engine answered {resp.status_code}: {_detail(resp)}")
                return
            for message in parse_sse(resp.iter_lines()):
                self._handle(message, first)

    def _handle(self, message: SseMessage, first: bool) -> None:
        data = message.json()
        if message.event == "ready":
            self.backoff = BACKOFF_FIRST
            resumed = data.get("resumed", 0) if isinstance(data, dict) else 0
            where = self.url.removesuffix(STREAM_PATH)
            if first:
                self.note(f"connected to {where}; live (Ctrl-C to stop)")
            else:
                self.note(f"resumed: {resumed} missed message(s) replayed; live again")
            return
        if message.event == "gap":
            skipped = data.get("skipped") if isinstance(data, dict) else "?"
            self.note(f"{skipped} older message(s) were skipped (beyond the server's backlog)")
            return
        if message.event == "overflow":
            self.note("too slow for the stream (overflow); resuming")
            return
        if message.id is not None:
            self.last_id = message.id
        if self.as_json:
            if isinstance(data, dict):
                line = {"event": message.event, "id": message.id, **data}
                self.out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
                self.out.flush()
            return
        text = format_message(message.event, data, color=self.color)
        if text is not None:
            self.out.write(text + "\n")
            self.out.flush()


def cmd_tail(args: argparse.Namespace) -> int:
    """``netcortex tail``: print the live stream until Ctrl-C."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"netcortex: configuration error\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    token = (
        args.token
        or os.environ.get(TOKEN_ENV)
        or (config.http.api_token.get_secret_value() if config.http.api_token is not None else None)
    )
    if not token:
        print(
            "netcortex tail: no API token: set http.api_token in the config, "
            f"{TOKEN_ENV}, or --token",
            file=sys.stderr,
        )
        return EXIT_USAGE
    params: list[tuple[str, str]] = [("subject", s) for s in args.subject or ()]
    for name in ("severity", "device", "site"):
        value = getattr(args, name)
        if value:
            params.append((name, value))
    tail = _Tail(
        args.url or _base_url(config),
        token,
        params,
        as_json=args.json,
        color=use_color(sys.stdout, no_color_flag=args.no_color),
        out=sys.stdout,
        err=sys.stderr,
    )
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout) as client:
            return tail.run(client)
    except KeyboardInterrupt:
        return EXIT_OK


def add_tail_parser(sub: Any) -> None:
    """Register ``netcortex tail`` on the CLI's subparsers."""
    tail = sub.add_parser(
        "tail",
        help="watch outcomes and incidents live (the engine's stream)",
        description=(
            "Print the running engine's outcomes and incident transitions as they "
            "happen, one line each: outcomes coloured by severity (info cyan, warn "
            "yellow, high red, critical white on red), incidents marked INCIDENT. "
            "Connects to GET /api/v1/stream of the engine the config describes "
            "(http.host/http.port; --url to override) with the API token (--token, "
            f"else {TOKEN_ENV}, else http.api_token of the config). Filters combine "
            "with AND. A dropped connection is resumed where it stopped (Last-Event-ID) "
            "after a back-off, with a note on stderr; nothing is missed or repeated. "
            "Colour is off when stdout is not a terminal, NO_COLOR is set, or with "
            "--no-color. Ctrl-C exits 0; a refused token exits 2."
        ),
        epilog=(
            "Examples: netcortex tail -c netcortex.yaml; "
            "netcortex tail --severity high --site dc-north; "
            "netcortex tail --subject 'incident.>' ; "
            "netcortex tail --json | jq .outcome.summary"
        ),
    )
    tail.add_argument("--config", "-c", metavar="FILE", help="config file of the engine")
    tail.add_argument(
        "--url", metavar="URL", help="the engine's base URL (default: from http.host/http.port)"
    )
    tail.add_argument(
        "--token", metavar="TOKEN", help=f"the API token (default: {TOKEN_ENV} or the config)"
    )
    tail.add_argument(
        "--subject",
        action="append",
        metavar="PATTERN",
        help="subject pattern, repeatable: 'reflex.link_down.>', 'incident.>', "
        "'incident.opened.*' (default: everything)",
    )
    tail.add_argument(
        "--severity",
        choices=("info", "warn", "high", "critical"),
        help="minimum severity (outcomes and incidents)",
    )
    tail.add_argument("--device", metavar="NAME", help="only this device (incident members too)")
    tail.add_argument("--site", metavar="SLUG", help="only this site")
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per message and line (for piping)"
    )
    tail.add_argument("--no-color", action="store_true", help="never colour the output")
    tail.set_defaults(func=cmd_tail)
