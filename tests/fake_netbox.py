"""A small, real NetBox for tests: HTTP on 127.0.0.1 (port 0), schema-checked.

``FakeNetbox`` serves the shared fixture ``netbox/inventory.json`` (or any
NetBox-shaped document) over real HTTP from a thread, so clients under test use
their real transport:

* ``GET`` on a list path answers a list body with real limit/offset pagination
  (NetBox's rules: default ``limit`` 50, ``limit=0`` or more than
  ``max_page_size`` means ``max_page_size``; ``next``/``previous`` are absolute
  URLs on this server);
* every request must carry ``Authorization: Token <t>`` (v1 token) or
  ``Bearer <t>`` (v2 ``nbt_…`` token) for the configured token, else 403;
* **every request is validated** against ``netbox/openapi.json``
  (``OpenApiValidator``): the path and method must exist, every query parameter
  must be declared for the operation (and parse as its type), POST/PUT/PATCH
  bodies must match the request schema. An invalid request gets a 400 and is
  appended to ``FakeNetbox.errors``; the fixtures assert that list is empty at
  teardown, so an invalid request fails the test;
* the netbox-bgp plugin path (``/api/plugins/…``) is not in the schema and is
  served unvalidated, or answers 404 with ``bgp_plugin=False``;
* a schema-valid POST/PUT/PATCH is recorded in ``FakeNetbox.writes`` and echoed;
* journal entries (issue 7): a valid ``POST /api/extras/journal-entries/`` (one
  or a list) is **stored** and answered with the full entry;
  ``GET /api/extras/journal-entries/`` filters them by ``q`` (case-insensitive
  substring of ``comments``), ``assigned_object_type``, ``assigned_object_id``
  and ``kind``; ``journal_count(marker)`` counts entries carrying a marker (to
  assert exactly-once); a valid ``PATCH /api/extras/journal-entries/<id>/``
  (``PatchedWritableJournalEntryRequest``) **updates** the stored entry (its
  ``last_updated`` too) and answers it, 404 for an unknown id (issue 8:
  incident entries are rewritten in place);
* ``name`` / ``device`` / ``device_id`` / ``slug`` filter the inventory lists,
  as NetBox does (``/api/dcim/sites/?slug=`` finds a site);
* faults for the next N requests or for a period (``inject``): an error status
  (429 or 503 with ``Retry-After`` …), a delay (a slow or hanging NetBox;
  ``stop`` releases it), a connection closed without an answer, or a POST that
  is stored but whose answer is lost; ``stop()`` then ``start()`` refuses
  connections in between and keeps the port and the stored entries.

The 4 MB schema is parsed, converted and indexed once per process
(``openapi_validator()``). Schema quirks handled (see the fixture README):
``nullable`` becomes "schema or null" (covers ``allOf`` + ``nullable``), OAS 3.0
boolean ``exclusiveMinimum``/``exclusiveMaximum`` become JSON Schema numbers, and
``{value, label}`` choice objects are nullable (NetBox answers ``null``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import load_json_fixture

__all__ = [
    "DEFAULT_TOKEN",
    "FakeNetbox",
    "OpenApiValidator",
    "fixture_inventory",
    "openapi_validator",
    "running_fake_netbox",
    "scenario_inventory",
    "self_signed_tls",
]

#: A v1-style (40 hex) token the fake accepts by default.
DEFAULT_TOKEN = "0123456789abcdef0123456789abcdef01234567"
_SCHEMA_URI = "urn:netbox-openapi"
_BGP_PATH = "/api/plugins/bgp/bgpsession/"
JOURNAL_PATH = "/api/extras/journal-entries/"
_KIND_LABELS = {"info": "Info", "success": "Success", "warning": "Warning", "danger": "Danger"}


# ------------------------------------------------------------------- schema handling


def _convert(node: Any) -> Any:
    """OAS 3.0 schema → JSON Schema 2020-12, with the fixture README's quirks applied."""
    if isinstance(node, list):
        return [_convert(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v) for k, v in node.items()}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(key) is True and bound in out:
            out[key] = out.pop(bound)
        elif isinstance(out.get(key), bool):
            del out[key]
    props = out.get("properties")
    is_choice = (
        out.get("type") == "object" and isinstance(props, dict) and set(props) == {"value", "label"}
    )
    if out.pop("nullable", False) is True or is_choice:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class _Operation:
    method: str
    template: str
    params: dict[str, dict[str, Any]]  # query parameter name → its schema
    body_schema: dict[str, Any] | None
    body_required: bool
    response_ref: dict[str, Any] | None


class OpenApiValidator:
    """Checks requests (and response bodies) against the NetBox OpenAPI document.

    Built once from the parsed document: a regex per path template (literal
    paths looked up first, by dict), the declared query parameters per
    operation, and one JSON Schema registry over the converted document.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        converted = _convert(document["components"])
        self._registry: Registry[Any] = Registry().with_resource(
            _SCHEMA_URI,
            Resource(contents={"components": converted}, specification=DRAFT202012),
        )
        self._literal: dict[str, dict[str, _Operation]] = {}
        self._templated: list[tuple[re.Pattern[str], dict[str, _Operation]]] = []
        for template, item in document["paths"].items():
            ops: dict[str, _Operation] = {}
            shared = item.get("parameters", [])
            for method in ("get", "post", "put", "patch", "delete"):
                op = item.get(method)
                if op is None:
                    continue
                params = {
                    p["name"]: p.get("schema", {})
                    for p in [*shared, *op.get("parameters", [])]
                    if p.get("in") == "query"
                }
                body = op.get("requestBody")
                body_schema = None
                if body is not None:
                    raw = body.get("content", {}).get("application/json", {}).get("schema")
                    body_schema = self._rooted(_convert(raw)) if raw is not None else None
                ok = op.get("responses", {}).get("200") or op.get("responses", {}).get("201")
                resp = (ok or {}).get("content", {}).get("application/json", {}).get("schema")
                ops[method.upper()] = _Operation(
                    method.upper(),
                    template,
                    params,
                    body_schema,
                    bool(body and body.get("required")),
                    self._rooted(_convert(resp)) if resp is not None else None,
                )
            if "{" in template:
                rx = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
                self._templated.append((rx, ops))
            else:
                self._literal[template] = ops

    @staticmethod
    def _rooted(schema: Any) -> Any:
        """Rewrite local ``#/components/...`` refs to the registry's URI."""
        if isinstance(schema, dict):
            return {
                k: (
                    _SCHEMA_URI + v
                    if k == "$ref" and isinstance(v, str) and v.startswith("#")
                    else OpenApiValidator._rooted(v)
                )
                for k, v in schema.items()
            }
        if isinstance(schema, list):
            return [OpenApiValidator._rooted(v) for v in schema]
        return schema

    def operation(self, method: str, path: str) -> _Operation | None:
        """The operation for ``method`` on concrete ``path``, or ``None``."""
        ops = self._literal.get(path)
        if ops is None:
            for rx, candidate in self._templated:
                if rx.match(path):
                    ops = candidate
                    break
        return None if ops is None else ops.get(method.upper())

    def _schema_errors(self, schema: Any, instance: Any, limit: int = 3) -> list[str]:
        validator = Draft202012Validator(schema, registry=self._registry)
        errors = []
        for err in validator.iter_errors(instance):
            where = "/".join(map(str, err.absolute_path)) or "(root)"
            errors.append(f"{where}: {err.message[:200]}")
            if len(errors) >= limit:
                break
        return errors

    def check_request(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any | None
    ) -> list[str]:
        """Every problem with one request (empty when it is valid)."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in the schema"]
        problems = []
        for name, value in query:
            schema = op.params.get(name)
            if schema is None:
                problems.append(f"{method} {op.template}: undeclared query parameter {name!r}")
                continue
            problem = _check_param(schema, value)
            if problem:
                problems.append(f"{method} {op.template}: query {name}={value!r}: {problem}")
        if method in ("POST", "PUT", "PATCH"):
            if body is None:
                if op.body_required:
                    problems.append(f"{method} {op.template}: missing JSON body")
            elif op.body_schema is not None:
                # (PATCH operations declare Patched<X>Request schemas: nothing required.)
                problems += [
                    f"{method} {op.template}: body {e}"
                    for e in self._schema_errors(op.body_schema, body)
                ]
        return problems

    def check_response(self, method: str, path: str, body: Any) -> list[str]:
        """Every problem with a response body for ``method`` on ``path``."""
        op = self.operation(method, path)
        if op is None or op.response_ref is None:
            return [f"{method} {path}: no response schema"]
        return self._schema_errors(op.response_ref, body, limit=20)


def _check_param(schema: dict[str, Any], value: str) -> str | None:
    """Why ``value`` does not parse as a query parameter of ``schema`` (or ``None``)."""
    kind = schema.get("type")
    if kind == "array":
        return _check_param(schema.get("items", {}), value)
    try:
        if kind == "integer":
            int(value)
        elif kind == "number":
            float(value)
        elif kind == "boolean" and value.lower() not in ("true", "false", "1", "0"):
            return "not a boolean"
    except ValueError:
        return f"not {kind}"
    if "enum" in schema and value not in schema["enum"]:
        return f"not one of {schema['enum'][:8]}"
    return None


@functools.cache
def openapi_validator() -> OpenApiValidator:
    """The validator for ``netbox/openapi.json`` (parsed and built once per process)."""
    return OpenApiValidator(load_json_fixture("netbox", "openapi.json"))


@functools.cache
def _fixture_inventory() -> dict[str, Any]:
    data: dict[str, Any] = load_json_fixture("netbox", "inventory.json")
    return data


def fixture_inventory() -> dict[str, Any]:
    """A deep copy of the shared ``netbox/inventory.json`` (safe to modify)."""
    return copy.deepcopy(_fixture_inventory())


#: The MAC and IPv6 address ``scenario_inventory`` adds (the fixture has neither).
SCENARIO_MAC = "00:1b:54:aa:00:08"
SCENARIO_IPV6 = "2001:db8::1"


def scenario_inventory() -> dict[str, Any]:
    """The fixture inventory plus a MAC on sw1-north GigabitEthernet1/0/3 and an IPv6
    loopback on r1-north (both schema-valid), so every lookup has a hook."""
    inv = fixture_inventory()
    iface = next(i for i in inv["/api/dcim/interfaces/"]["results"] if i["id"] == 8)
    brief_mac = {
        "id": 1,
        "url": "https://netbox.example.com/api/dcim/mac-addresses/1/",
        "display": SCENARIO_MAC.upper(),
        "mac_address": SCENARIO_MAC.upper(),
        "description": "",
    }
    iface.update(
        mac_address=SCENARIO_MAC.upper(),
        primary_mac_address=brief_mac,
        mac_addresses=[brief_mac],
    )
    ips = inv["/api/ipam/ip-addresses/"]
    v6 = copy.deepcopy(ips["results"][0])  # r1-north Loopback0
    v6.update(
        id=100,
        url="https://netbox.example.com/api/ipam/ip-addresses/100/",
        display_url="https://netbox.example.com/ipam/ip-addresses/100/",
        display=f"{SCENARIO_IPV6}/128",
        address=f"{SCENARIO_IPV6}/128",
        family={"value": 6, "label": "IPv6"},
    )
    ips["results"].append(v6)
    ips["count"] = len(ips["results"])
    return inv


# ---------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the
    # client's delayed ACK stall every keep-alive answer ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records what matters in ``requests`` / ``errors``."""

    def _hang_up(self) -> None:
        """Close the connection without an answer (the client sees it dropped)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if getattr(self, "_lose_response", False):
            self._hang_up()
            return
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path, query = split.path, parse_qsl(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            # The client went away mid-body (killed): a real server drops the
            # request without answering; it is neither a request nor an error.
            self.close_connection = True
            return
        auth = self.headers.get("Authorization")
        with fake.lock:
            fake.requests.append(_Request(self.command, path, query, auth, time.monotonic()))
        self._lose_response = False
        fault = fake.take_fault(self.command, path)
        if fault is not None:
            if fault.delay > 0 and fake.release.wait(fault.delay):
                self._hang_up()  # stopped while hanging: the connection goes away
                return
            if fault.drop:
                self._hang_up()
                return
            if fault.status is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
                self._send(fault.status, {"detail": f"injected HTTP {fault.status}"}, extra)
                return
            self._lose_response = fault.lose_response
        if auth != fake.expected_authorization:
            self._send(403, {"detail": "Invalid v1 token"})
            return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                fake.record_error(f"{self.command} {path}: body is not JSON")
                self._send(400, {"detail": "JSON parse error"})
                return
        if path.startswith("/api/plugins/"):
            if path == _BGP_PATH and fake.bgp_plugin and self.command == "GET":
                self._send(200, fake.page(path, query))
            else:
                self._send(404, {"detail": "Not found."})
            return
        problems = fake.validator.check_request(self.command, path, query, body)
        if problems:
            for p in problems:
                fake.record_error(p)
            self._send(400, {"detail": problems})
            return
        entry = re.fullmatch(re.escape(JOURNAL_PATH) + r"(\d+)/", path)
        if entry is not None and self.command == "PATCH":
            with fake.lock:
                fake.writes.append((self.command, path, body))
            updated = fake.patch_journal(int(entry.group(1)), body)
            self._send(200 if updated else 404, updated or {"detail": "Not found."})
            return
        if path == JOURNAL_PATH and self.command in ("GET", "POST"):
            if self.command == "GET":
                self._send(200, fake.journal_page(query))
            else:
                with fake.lock:
                    fake.writes.append((self.command, path, body))
                self._send(201, fake.store_journal(body))
            return
        if self.command == "GET":
            detail = re.fullmatch(r"(/api/.+/)(\d+)/", path)
            if detail is not None:
                item = fake.find(detail.group(1), int(detail.group(2)))
                self._send(200 if item else 404, item or {"detail": "Not found."})
            else:
                self._send(200, fake.page(path, query))
        elif self.command == "DELETE":
            self._send(204, {})
        else:
            with fake.lock:
                fake.writes.append((self.command, path, body))
                created = {"id": len(fake.writes), **body} if isinstance(body, dict) else body
            self._send(201 if self.command == "POST" else 200, created)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of a client opening more
    # connections at once; the kernel then retries them a second later.
    request_queue_size = 128
    fake: FakeNetbox

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open (keep-alive) connection, as a stopped server would."""
        with self.connections_lock:
            conns = list(self.open_connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    authorization: str | None
    at: float = 0.0  #: ``time.monotonic()`` when it arrived


@dataclass
class _Fault:
    """One injected fault: for ``remaining`` more requests, or until ``until``."""

    remaining: int | None
    until: float | None
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    lose_response: bool = False
    method: str | None = None
    path: str | None = None
    hits: int = field(default=0)


class FakeNetbox:
    """A real HTTP NetBox serving ``inventory`` with schema validation.

    Attributes:
        url: base URL (``http://127.0.0.1:<port>``), set by ``start``.
        errors: every invalid request seen (fixtures assert it stays empty).
        requests: every request (method, path, query pairs, Authorization).
        writes: schema-valid POST/PUT/PATCH bodies ``(method, path, body)``.
        journal: the stored journal entries (full NetBox bodies), oldest first.
        release: set by ``stop`` so requests held by a ``delay`` fault let go.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        inventory: dict[str, Any] | None = None,
        bgp_plugin: bool = True,
        max_page_size: int = 1000,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.token = token
        self.inventory = inventory if inventory is not None else _fixture_inventory()
        self.bgp_plugin = bgp_plugin
        self.max_page_size = max_page_size
        self.tls = tls
        self.validator = openapi_validator()
        self.errors: list[str] = []
        self.requests: list[_Request] = []
        self.writes: list[tuple[str, str, Any]] = []
        self.journal: list[dict[str, Any]] = []
        self.release = threading.Event()
        self._faults: list[_Fault] = []
        self._port = 0
        self.lock = threading.Lock()
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def expected_authorization(self) -> str:
        """The ``Authorization`` header value the fake accepts."""
        scheme = "Bearer" if self.token.startswith("nbt_") else "Token"
        return f"{scheme} {self.token}"

    def record_error(self, problem: str) -> None:
        """Note one invalid request (the test fails at fixture teardown)."""
        with self.lock:
            self.errors.append(problem)

    def start(self) -> FakeNetbox:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread.

        After a ``stop``, ``start`` binds the same port again (and keeps the
        stored journal entries): clients see NetBox go away and come back.
        """
        self.release.clear()
        server = _Server(("127.0.0.1", self._port))
        self._port = server.server_address[1]
        server.fake = self
        scheme = "http"
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        self._server = server
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        # A short poll interval: `stop` (shutdown) returns in ~50 ms instead of 0.5 s.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-netbox"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent); the port then refuses."""
        server, self._server = self._server, None
        self.release.set()
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # ------------------------------------------------------------ faults (issue 7)

    def inject(
        self,
        *,
        count: int | None = 1,
        seconds: float | None = None,
        status: int | None = None,
        retry_after: str | float | None = None,
        delay: float = 0.0,
        drop: bool = False,
        lose_response: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests (or all for ``seconds``) badly.

        Args:
            count: requests the fault applies to (``None`` with ``seconds``: all).
            seconds: apply for this long instead of (or as well as) ``count``.
            status: answer with this status (``429``, ``503`` ...) instead.
            retry_after: the ``Retry-After`` header sent with ``status``
                (seconds, or an HTTP date as text).
            delay: hold the request this long first (``stop`` releases it).
            drop: close the connection without any answer.
            lose_response: handle the request (a POST is stored) but close the
                connection instead of answering: the write happened, the client
                cannot know.
            method, path: only requests with this method / path match.
        """
        until = time.monotonic() + seconds if seconds is not None else None
        fault = _Fault(
            remaining=count if seconds is None else None,
            until=until,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            delay=delay,
            drop=drop,
            lose_response=lose_response,
            method=method,
            path=path,
        )
        with self.lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self.lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> _Fault | None:
        """The first live fault matching this request (its count is used up by one)."""
        now = time.monotonic()
        with self.lock:
            for fault in list(self._faults):
                if (fault.until is not None and now >= fault.until) or fault.remaining == 0:
                    self._faults.remove(fault)
                    continue
                if fault.method is not None and fault.method != method:
                    continue
                if fault.path is not None and fault.path != path:
                    continue
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    # ----------------------------------------------------- journal entries (issue 7)

    def store_journal(self, body: Any) -> Any:
        """Store one (or a list of) schema-valid journal entry request(s); the full entries."""
        if isinstance(body, list):
            return [self.store_journal(item) for item in body]
        with self.lock:
            entry_id = len(self.journal) + 1
            stamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            kind = body.get("kind", "info")
            entry = {
                "id": entry_id,
                "url": f"{self.url}/api/extras/journal-entries/{entry_id}/",
                "display_url": f"{self.url}/extras/journal-entries/{entry_id}/",
                "display": stamp,
                "assigned_object_type": body["assigned_object_type"],
                "assigned_object_id": body["assigned_object_id"],
                "assigned_object": None,
                "created": stamp,
                "created_by": None,
                "kind": {"value": kind, "label": _KIND_LABELS.get(kind, kind)},
                "comments": body["comments"],
                "tags": [],
                "custom_fields": {},
                "last_updated": stamp,
            }
            self.journal.append(entry)
            return copy.deepcopy(entry)

    def patch_journal(self, entry_id: int, body: Any) -> dict[str, Any] | None:
        """Apply a schema-valid PATCH to stored entry ``entry_id``; the full entry, or
        ``None`` when there is no such entry."""
        with self.lock:
            entry = next((e for e in self.journal if e["id"] == entry_id), None)
            if entry is None:
                return None
            for key in ("assigned_object_type", "assigned_object_id", "comments"):
                if key in body:
                    entry[key] = body[key]
            if "kind" in body:
                kind = body["kind"]
                entry["kind"] = {"value": kind, "label": _KIND_LABELS.get(kind, kind)}
            entry["last_updated"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            return copy.deepcopy(entry)

    def journal_page(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        """The journal-entries list body: filtered like NetBox, then paginated."""
        params = dict(query)
        q = params.get("q", "").lower()
        types = {v for k, v in query if k == "assigned_object_type"}
        ids = {int(v) for k, v in query if k == "assigned_object_id"}
        kinds = {v for k, v in query if k == "kind"}
        with self.lock:
            found = [
                copy.deepcopy(e)
                for e in self.journal
                if q in e["comments"].lower()
                and (not types or e["assigned_object_type"] in types)
                and (not ids or e["assigned_object_id"] in ids)
                and (not kinds or e["kind"]["value"] in kinds)
            ]
        return self.journal_body(found, params)

    def journal_body(self, found: list[Any], params: dict[str, str]) -> dict[str, Any]:
        """The journal-entries list body for entries ``found``, paginated by the query's
        ``limit``/``offset`` like NetBox (one page: no ``next`` link)."""
        limit = int(params.get("limit", 50))
        if limit <= 0 or limit > self.max_page_size:
            limit = self.max_page_size
        offset = max(0, int(params.get("offset", 0)))
        return {
            "count": len(found),
            "next": None,
            "previous": None,
            "results": found[offset : offset + limit],
        }

    def journal_count(self, marker: str) -> int:
        """How many stored journal entries have ``marker`` as one of their lines."""
        with self.lock:
            return sum(
                1
                for e in self.journal
                if any(line.strip() == marker for line in e["comments"].splitlines())
            )

    def _results(self, path: str) -> list[Any]:
        body = self.inventory.get(path)
        return list(body.get("results", [])) if isinstance(body, dict) else []

    def find(self, list_path: str, item_id: int) -> Any:
        """One object of ``list_path`` by id, or ``None``."""
        return next((o for o in self._results(list_path) if o.get("id") == item_id), None)

    def page(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        """The list body for ``path`` honouring ``limit``/``offset`` like NetBox."""
        params = dict(query)
        results = _filtered(self._results(path), query)
        limit = int(params.get("limit", 50))
        if limit <= 0 or limit > self.max_page_size:
            limit = self.max_page_size
        offset = max(0, int(params.get("offset", 0)))

        def link(off: int) -> str:
            rest = [(k, v) for k, v in query if k not in ("limit", "offset")]
            return f"{self.url}{path}?" + urlencode([*rest, ("limit", limit), ("offset", off)])

        return {
            "count": len(results),
            "next": link(offset + limit) if offset + limit < len(results) else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "results": results[offset : offset + limit],
        }


def _filtered(results: list[Any], query: list[tuple[str, str]]) -> list[Any]:
    """``results`` narrowed by NetBox's ``name`` / ``device`` / ``device_id`` / ``slug``
    filters."""
    wanted: dict[str, set[str]] = {}
    for key, value in query:
        if key in ("name", "device", "device_id", "slug"):
            wanted.setdefault(key, set()).add(value)
    if not wanted:
        return results

    def keep(item: Any) -> bool:
        device = item.get("device") if isinstance(item.get("device"), dict) else {}
        return (
            ("name" not in wanted or item.get("name") in wanted["name"])
            and ("slug" not in wanted or item.get("slug") in wanted["slug"])
            and ("device" not in wanted or device.get("name") in wanted["device"])
            and ("device_id" not in wanted or str(device.get("id")) in wanted["device_id"])
        )

    return [r for r in results if isinstance(r, dict) and keep(r)]


@contextmanager
def running_fake_netbox(**kwargs: Any) -> Iterator[FakeNetbox]:
    """A started ``FakeNetbox``; at exit it is stopped and its ``errors`` must be empty."""
    fake = FakeNetbox(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.errors == [], f"invalid requests reached the fake NetBox: {fake.errors}"


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-netbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fake-netbox.crt", directory / "fake-netbox.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
