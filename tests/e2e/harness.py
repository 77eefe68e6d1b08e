"""End-to-end harness: the real ``python -m netcortex run`` process, real traps and HTTP.

``EngineProcess`` writes a config (trap and HTTP on 127.0.0.1 port 0, an API
token, the Meraki fixture secret, JSON logs), starts the engine as a subprocess
and reads its stderr in a background thread, one JSON log line at a time. The
bound ports come from the structured ``listening`` events (``listener="trap"``
and ``listener="http"``, as Alertmanager's acceptance tests read theirs), never
from a guessed port. Expectations wait on log lines, stored outcomes or API
answers with a deadline — no sleep-and-hope. ``stop()`` sends SIGTERM (or
SIGINT) and the caller asserts exit code 0 and an ``engine_stopped`` line.

Traps are sent with net-snmp's ``snmptrap``, built from the shared catalog's
command lines (``send_traps`` runs several at once). Webhooks and API calls go
over real HTTP with httpx (``EngineProcess.http``, ``post_webhook``, ``api``,
``metrics``); ``meraki_alert`` loads a shared Meraki fixture body with ``sentAt``
rewritten to now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from netcortex.bridge.cli import query_outcomes
from netcortex.config import load_config
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from tests.conftest import load_json_fixture

__all__ = [
    "API_TOKEN",
    "BACKENDS",
    "CATALOG_RECEIVER",
    "MERAKI_FIXTURES",
    "MERAKI_SECRET",
    "V3_USER",
    "EngineProcess",
    "LogLine",
    "Samples",
    "bus_overrides",
    "capture_trap",
    "catalog_command",
    "meraki_alert",
    "now_iso",
    "parse_metrics",
    "send_datagrams",
    "send_traps",
    "snmptrap_argv",
]

LogLine = dict[str, Any]

#: The fixture's v3 user (``../shared/fixtures/snmp/README.md``), as config.
V3_USER = {
    "user": "netcortex",
    "engine_id": "0x80001f880472312d6c6162",
    "auth_protocol": "SHA-256",
    "auth_key": "netcortex-auth-01",
    "priv_protocol": "AES",
    "priv_key": "netcortex-priv-01",
}

BACKENDS = [
    pytest.param("memory", id="memory", marks=pytest.mark.xdist_group("e2e-memory")),
    pytest.param("nats", id="nats", marks=[pytest.mark.nats, pytest.mark.xdist_group("e2e-nats")]),
]


def bus_overrides(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``bus`` section for ``backend``: NATS gets the session server and a namespace."""
    if backend == "memory":
        return {"backend": "memory"}
    server = request.getfixturevalue("nats_server")
    url = getattr(server, "url", server)
    return {
        "backend": "nats",
        "nats_url": str(url),
        "namespace": f"e2e{uuid.uuid4().hex[:10]}",
        "storage": "memory",
    }


#: The receiver address in the catalog's command lines (rewritten to the bound port).
CATALOG_RECEIVER = "127.0.0.1:1162"

#: ``http.api_token`` written into every engine's config (unless overridden).
API_TOKEN = "e2e-api-token-7f3a9c1d5b2e8f40"

#: ``meraki.shared_secret`` of the shared fixtures (``../shared/fixtures/meraki/README.md``).
MERAKI_SECRET = "fixture-shared-secret-0001"

#: The eight shared Meraki fixture bodies (file stems).
MERAKI_FIXTURES = (
    "security_ids_alert",
    "security_malware_detected",
    "security_rogue_ap",
    "device_aps_went_down",
    "device_aps_came_up",
    "port_switch_port_disconnected",
    "uplink_status_changed",
    "settings_changed",
)

#: Parsed ``/metrics`` samples: ``(sample name, sorted label pairs)`` → value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def now_iso() -> str:
    """Now as Meraki writes ``sentAt``: ISO 8601 UTC, microseconds, ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meraki_alert(name: str, **changes: Any) -> dict[str, Any]:
    """The shared fixture body ``name`` (a ``MERAKI_FIXTURES`` stem) with ``sentAt`` = now.

    ``changes`` replace top-level fields (``alertId="..."``); a value of ``None``
    removes the field.
    """
    body: dict[str, Any] = load_json_fixture("meraki", f"{name}.json")
    body["sentAt"] = now_iso()
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def parse_metrics(text: str) -> Samples:
    """Parse Prometheus text (``/metrics``) with the reference parser into samples.

    Raises:
        ValueError: the text is not valid exposition format.
    """
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


class EngineProcess:
    """One ``python -m netcortex run --config FILE`` subprocess.

    Args:
        tmp_path: a private directory for the config and the SQLite file.
        overrides: config sections merged over the defaults written here
            (trap and HTTP on 127.0.0.1 port 0, ``http.api_token`` = ``API_TOKEN``,
            ``meraki.shared_secret`` = ``MERAKI_SECRET``, SQLite under
            ``tmp_path``, JSON logs). A value of ``None`` writes YAML ``null``
            (``{"meraki": {"shared_secret": None}}`` = no secret configured).
        env: extra environment variables.
        args: extra ``netcortex run`` arguments (``["--record", FILE]``).

    Attributes:
        trap_port: the bound trap port (0 when the trap receiver is disabled).
        http_port: the bound HTTP port (0 when the HTTP server is disabled).
        api_token: the configured ``http.api_token`` (``None`` when unset).
        meraki_secret: the configured ``meraki.shared_secret`` (``None`` when unset).
    """

    def __init__(
        self,
        tmp_path: Path,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.tmp_path = tmp_path
        self.args = tuple(args)
        self.db_path = tmp_path / "outcomes.db"
        config: dict[str, dict[str, Any]] = {
            "bus": {"backend": "memory"},
            "store": {"backend": "sqlite", "sqlite_path": str(self.db_path)},
            "trap": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0, "api_token": API_TOKEN},
            "meraki": {"shared_secret": MERAKI_SECRET},
            "log": {"level": "info", "format": "json"},
        }
        for section, values in (overrides or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_data = config
        self.config_path = tmp_path / "netcortex.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NETCORTEX_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[LogLine] = []
        self.returncode: int | None = None
        self.trap_port = 0
        self.http_port = 0
        self.api_token: str | None = config["http"].get("api_token")
        self.meraki_secret: str | None = config["meraki"].get("shared_secret")
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._http: httpx.Client | None = None

    @property
    def backend(self) -> str:
        """The bus backend this engine runs on."""
        return str(self.config_data["bus"]["backend"])

    # -- process -----------------------------------------------------------------

    def _enabled(self, section: str) -> bool:
        return bool(self.config_data.get(section, {}).get("enabled", True))

    def start(self, timeout: float = _START_TIMEOUT) -> EngineProcess:
        """Start the process and return once its listeners are bound and it has started.

        Waits for ``listening`` with ``listener="trap"`` and ``listener="http"``
        (each when enabled in the config), then ``engine_started``.

        Raises:
            TimeoutError: no ``listening`` event within ``timeout`` seconds.
            RuntimeError: the process exited before listening.
        """
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netcortex",
                "run",
                "--config",
                str(self.config_path),
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.tmp_path,
        )
        self._reader = threading.Thread(target=self._read, name="engine-stderr", daemon=True)
        self._reader.start()
        if self._enabled("trap"):
            line = self.wait_for_log("listening", timeout=timeout, listener="trap")
            self.trap_port = int(line["port"])
        if self._enabled("http"):
            line = self.wait_for_log("listening", timeout=timeout, listener="http")
            self.http_port = int(line["port"])
        self.wait_for_log("engine_started", timeout=timeout)
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.rstrip("\n")
            if not text:
                continue
            try:
                parsed = json.loads(text)
                line: LogLine = parsed if isinstance(parsed, dict) else {"raw": text}
            except ValueError:
                line = {"raw": text}
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = _STOP_TIMEOUT) -> int:
        """Send ``sig``, wait for exit and the last log line; return the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
            raise
        finally:
            self._release(timeout)
        return self.returncode

    def _release(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Join the reader thread, close the pipe and the HTTP client (no leaked fds)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop_cleanly(self, sig: signal.Signals = signal.SIGTERM) -> LogLine:
        """Stop with ``sig``; assert exit 0 and return the ``engine_stopped`` line."""
        code = self.stop(sig)
        assert code == 0, f"exit code {code}; last lines: {self.lines[-10:]}"
        stopped = self.logs("engine_stopped")
        assert len(stopped) == 1, f"no engine_stopped line; last lines: {self.lines[-10:]}"
        return stopped[0]

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop()
        elif self.proc is not None:
            self.proc.wait()
            self._release()

    # -- logs --------------------------------------------------------------------

    def logs(self, event: str | None = None, **fields: Any) -> list[LogLine]:
        """Log lines so far, optionally only ``event`` lines whose ``fields`` match."""
        with self._cond:
            snapshot = list(self.lines)
        return [line for line in snapshot if _matches(line, event, fields)]

    def wait_for_log(self, event: str, *, timeout: float = 10.0, **fields: Any) -> LogLine:
        """Return the first ``event`` line whose ``fields`` match, waiting up to ``timeout``.

        Raises:
            TimeoutError: none within ``timeout`` seconds.
            RuntimeError: the process exited without writing one.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if _matches(line, event, fields):
                        return line
                if (
                    self.proc is not None
                    and self.proc.poll() is not None
                    and not (self._reader and self._reader.is_alive())
                ):
                    raise RuntimeError(
                        f"engine exited ({self.proc.returncode}) without {event} {fields}; "
                        f"last lines: {self.lines[-10:]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no {event} {fields} within {timeout}s; last lines: {self.lines[-10:]}"
                    )
                # Wake at least every 0.1 s: the reader may hit end of output (and the
                # process exit) without anything left to notify us.
                self._cond.wait(min(left, 0.1))

    # -- HTTP --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running engine's HTTP server.

        Raises:
            RuntimeError: the HTTP server is not listening (not started or disabled).
        """
        if not self.http_port:
            raise RuntimeError("the engine's HTTP server is not listening")
        host = str(self.config_data["http"].get("host", "127.0.0.1"))
        return f"http://{host}:{self.http_port}"

    @property
    def http(self) -> httpx.Client:
        """A keep-alive ``httpx.Client`` on ``base_url`` (no auth header; closed at stop)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=10.0)
        return self._http

    def auth_headers(self, token: str | None = None) -> dict[str, str]:
        """``Authorization: Bearer`` for ``token`` (default: the configured API token)."""
        token = token if token is not None else self.api_token
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API request with the configured bearer token (``path`` like ``/api/v1/...``)."""
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def post_webhook(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` (a dict is JSON-encoded) to ``/webhooks/meraki``."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        return self.http.post("/webhooks/meraki", content=content, headers=sent)

    def metrics(self) -> Samples:
        """``GET /api/v1/metrics`` (bearer), parsed with prometheus_client's parser."""
        resp = self.api("GET", "/api/v1/metrics")
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return parse_metrics(resp.text)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/api/v1/metrics`` (0 when absent): ``metric("x_total", a="b")``."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def api_outcomes(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every outcome ``GET /api/v1/outcomes`` lists for ``params``, following cursors."""
        query = dict(params)
        while True:
            resp = self.api("GET", "/api/v1/outcomes", params=query)
            assert resp.status_code == 200, (resp.status_code, resp.text)
            page = resp.json()
            yield from page["items"]
            if not page["next_cursor"]:
                return
            query["cursor"] = page["next_cursor"]

    def wait_for_api_outcomes(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        count: int = 1,
        *,
        timeout: float = 10.0,
        interval: float = 0.05,
        **params: Any,
    ) -> list[dict[str, Any]]:
        """Poll ``GET /api/v1/outcomes`` until ``count`` listed outcomes satisfy ``predicate``.

        Raises:
            TimeoutError: fewer within ``timeout`` seconds (the message lists what
                the API returned).
        """
        deadline = time.monotonic() + timeout
        while True:
            listed = list(self.api_outcomes(**params))
            found = [o for o in listed if predicate(o)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(found)}/{count} matching outcomes within {timeout}s; API lists "
                    f"{[(o['handler_id'], o['kind'], o['target']) for o in listed]}; "
                    f"last lines: {self.lines[-10:]}"
                )
            if not self.alive:
                raise RuntimeError(f"engine died; last lines: {self.lines[-10:]}")
            time.sleep(interval)

    def secrets_in_logs(self, *secrets: str) -> list[LogLine]:
        """Captured log lines containing any of ``secrets`` (default: token and secret)."""
        wanted = [s for s in (secrets or (self.api_token, self.meraki_secret)) if s]
        with self._cond:
            snapshot = list(self.lines)
        return [
            line
            for line in snapshot
            if any(s in json.dumps(line, ensure_ascii=False) for s in wanted)
        ]

    # -- outcomes ----------------------------------------------------------------

    def outcomes(self, query: OutcomeQuery | None = None) -> list[ReflexOutcome]:
        """Outcomes in the engine's store now (read beside the running engine)."""
        on_postgres = self.config_data["store"].get("backend") == "postgres"
        if not on_postgres and not self.db_path.exists():
            return []
        config = load_config(self.config_path, {})
        return asyncio.run(query_outcomes(config, query or OutcomeQuery(limit=10_000)))

    def wait_for_outcomes(
        self,
        predicate: Callable[[ReflexOutcome], bool],
        count: int = 1,
        *,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> list[ReflexOutcome]:
        """Poll the store until at least ``count`` outcomes satisfy ``predicate``.

        Raises:
            TimeoutError: fewer within ``timeout`` seconds (the message lists what
                the store holds).
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [o for o in self.outcomes() if predicate(o)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(found)}/{count} matching outcomes within {timeout}s; store has "
                    f"{[(o.handler_id, o.kind.value, o.target) for o in self.outcomes()]}; "
                    f"last lines: {self.lines[-10:]}"
                )
            if not self.alive:
                raise RuntimeError(f"engine died; last lines: {self.lines[-10:]}")
            time.sleep(interval)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run another ``python -m netcortex`` command against this engine's config."""
        return subprocess.run(
            [sys.executable, "-m", "netcortex", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.tmp_path,
            timeout=timeout,
            check=False,
        )


def _matches(line: LogLine, event: str | None, fields: Mapping[str, Any]) -> bool:
    if event is not None and line.get("event") != event:
        return False
    return all(line.get(k) == v for k, v in fields.items())


# -- traps -----------------------------------------------------------------------


def catalog_command(catalog: Mapping[str, Any], key: str, version: str) -> str:
    """The catalog's ``snmptrap`` command line for notification ``key`` and ``version``."""
    for entry in catalog["notifications"]:
        if entry["key"] == key or entry["name"] == key:
            command: str = entry["commands"][version]
            return command
    raise KeyError(key)


def snmptrap_argv(
    command: str,
    port: int,
    *,
    clientaddr: str | None = None,
    replace: Mapping[str, str] | None = None,
) -> list[str]:
    """Turn a catalog command line into argv aimed at ``127.0.0.1:port``.

    Args:
        command: an ``snmptrap ...`` line from the catalog.
        port: the engine's bound trap port (replaces the catalog's 1162).
        clientaddr: send from this local address (``127.0.0.N``) so the UDP
            source — the device of a v2c/v3 trap — is unique to a test.
        replace: argument values to swap (e.g. a community or an auth key).
    """
    argv = shlex.split(command)
    if argv[0] != "snmptrap":
        raise ValueError(f"not an snmptrap command: {command}")
    swaps = dict(replace or {})
    swaps[CATALOG_RECEIVER] = f"127.0.0.1:{port}"
    argv = [swaps.get(arg, arg) for arg in argv]
    if f"127.0.0.1:{port}" not in argv:
        raise ValueError(f"receiver {CATALOG_RECEIVER} not found in: {command}")
    if clientaddr is not None:
        argv.insert(1, f"--clientaddr={clientaddr}")
    return argv


def send_traps(argvs: Iterable[Sequence[str]], *, timeout: float = 10.0) -> None:
    """Run several ``snmptrap`` commands at once; assert each one succeeded."""
    commands = [list(argv) for argv in argvs]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in commands
    ]
    for argv, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{shlex.join(argv)} failed: {err or out}"


def send_datagrams(port: int, payloads: Iterable[bytes], *, source: str = "127.0.0.1") -> None:
    """Send raw UDP datagrams (garbage, replayed traps) to ``127.0.0.1:port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", port))


def capture_trap(argv_for_port: Callable[[int], Sequence[str]], timeout: float = 5.0) -> bytes:
    """The datagram an ``snmptrap`` command sends (to a private socket), for replaying."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        send_traps([argv_for_port(sock.getsockname()[1])])
        data, _ = sock.recvfrom(65535)
        return data


# -- raw SNMPv2c traps (for storms: one snmptrap process per trap is too slow) ----


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out.extend(reversed(enc))
    return _tlv(0x06, bytes(out))


def v2c_link_down(request_id: int, if_index: int, community: bytes = b"public") -> bytes:
    """A net-snmp-shaped v2c linkDown trap with distinct ifIndex and request id."""
    vbs = [
        (_oid("1.3.6.1.2.1.1.3.0"), _tlv(0x43, (360000).to_bytes(3, "big"))),
        (_oid("1.3.6.1.6.3.1.1.4.1.0"), _oid("1.3.6.1.6.3.1.1.5.3")),
        (_oid(f"1.3.6.1.2.1.2.2.1.1.{if_index}"), _int(if_index)),
        (_oid(f"1.3.6.1.2.1.2.2.1.7.{if_index}"), _int(1)),
        (_oid(f"1.3.6.1.2.1.2.2.1.8.{if_index}"), _int(2)),
        (_oid(f"1.3.6.1.2.1.31.1.1.1.1.{if_index}"), _tlv(0x04, f"Gi1/0/{if_index}".encode())),
    ]
    vbl = _tlv(0x30, b"".join(_tlv(0x30, o + v) for o, v in vbs))
    pdu = _tlv(0xA7, _int(request_id) + _int(0) + _int(0) + vbl)
    return _tlv(0x30, _int(1) + _tlv(0x04, community) + pdu)
