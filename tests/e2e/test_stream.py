"""End to end: ``GET /api/v1/stream`` and ``GET /api/v1/status`` on a real engine (issue 9).

An in-process ``Engine`` (memory and NATS bus, SQLite, the shared fixture
inventory, the HTTP server on a free port) gets real traps — net-snmp's
``snmptrap`` from the shared catalog, or raw v2c datagrams for volume — and
real HTTP clients read the stream with httpx. Nothing sleeps and hopes: every
expectation waits for a message, a stored row or a counter, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from netcortex.app import Engine
from netcortex.config import Config
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.metrics import Counter
from tests.conftest import shared_fixture
from tests.e2e.harness import (
    API_TOKEN,
    BACKENDS,
    EngineProcess,
    bus_overrides,
    catalog_command,
    send_datagrams,
    snmptrap_argv,
    v2c_link_down,
)

pytestmark = [pytest.mark.e2e, pytest.mark.snmp]

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SW1, SW2, R1_SOUTH = "192.0.2.11", "192.0.2.12", "198.51.100.1"


# ------------------------------------------------------------------ helpers


@dataclass
class Sse:
    """One parsed message (``event="comment"`` for a ``:`` line)."""

    event: str
    id: str | None
    data: Any


class StreamReader:
    """Reads SSE messages from an open httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def _line(self) -> str:
        return await anext(self._lines)

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> Sse:
        """The next message (keep-alive comments skipped unless ``comments``)."""
        async with asyncio.timeout(timeout):
            event, ident, data, seen = "message", None, [], False
            while True:
                line = await self._line()
                if line == "":
                    if seen:
                        return Sse(event, ident, json.loads("\n".join(data)) if data else None)
                    continue
                if line.startswith(":"):
                    if comments:
                        return Sse("comment", None, line)
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event, seen = value, True
                elif name == "data":
                    data.append(value)
                    seen = True
                elif name == "id":
                    ident, seen = value, True
                elif name == "retry":
                    continue

    async def until(self, event: str, timeout: float = 10.0) -> list[Sse]:
        """Messages up to and including the first ``event``."""
        got: list[Sse] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                got.append(message)
                if message.event == event:
                    return got


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    params: Any = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[StreamReader]:
    """A stream connection (status checked) and a reader on it."""
    async with client.stream(
        "GET", "/api/v1/stream", params=params, headers={**AUTH, **(headers or {})}
    ) as resp:
        assert resp.status_code == 200, (await resp.aread()).decode()
        assert resp.headers["content-type"].startswith("text/event-stream")
        yield StreamReader(resp)


def _config(tmp_path: Path, bus: dict[str, Any], **http: Any) -> Config:
    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    return Config.model_validate(
        {
            "bus": bus,
            "inventory": inventory,
            "store": {"sqlite_path": str(tmp_path / "outcomes.db"), "flush_interval": 0.005},
            "trap": {"host": "127.0.0.1", "port": 0},
            "http": {
                "host": "127.0.0.1",
                "port": 0,
                "api_token": API_TOKEN,
                "stream_keepalive_seconds": 0.5,
                **http,
            },
        }
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, bus: dict[str, Any], **http: Any
) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """A started engine and an httpx client on its HTTP server."""
    async with Engine(_config(tmp_path, bus, **http)) as engine:
        host, port = engine.bound_addresses["http"]
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", timeout=httpx.Timeout(10.0, read=30.0)
        ) as client:
            yield engine, client


async def snmptrap(catalog: dict[str, Any], key: str, port: int, agent: str) -> None:
    """The catalog's v1 ``key`` trap (ifIndex 3) with agent-addr ``agent``."""
    argv = snmptrap_argv(catalog_command(catalog, key, "v1"), port, replace={"192.0.2.11": agent})
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """``await check()`` until it is truthy (polled every 20 ms), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def stored(engine: Engine, count: int) -> list[ReflexOutcome]:
    """The engine's stored outcomes, oldest first, once there are ``count``."""

    async def enough() -> list[ReflexOutcome] | None:
        await engine.store.flush()
        found = await engine.store.query(OutcomeQuery(limit=1000))
        return list(reversed(found)) if len(found) >= count else None

    result: list[ReflexOutcome] = await wait_for(enough, what=f"{count} stored outcomes")
    return result


def counter(engine: Engine, name: str) -> float:
    metric = engine.metrics.get(name)
    return metric.total() if isinstance(metric, Counter) else 0.0


def key(message: Sse) -> tuple[str, str]:
    """What a message is about: (handler, device) of an outcome, (incident, transition)."""
    if message.event == "outcome":
        o = message.data["outcome"]
        return (o["handler_id"], o["device"] or o["target"])
    return ("incident", message.data["transition"])


# ------------------------------------------------------------------ live


@pytest.mark.parametrize("backend", BACKENDS)
async def test_trap_outcome_and_cable_incident_arrive_live(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """A trap sent after connecting arrives as ``outcome`` (with a resume id and the
    reflex subject); both ends of the fixture cable → ``incident`` opened."""
    async with running(tmp_path, bus_overrides(backend, request)) as (engine, client):
        port = engine.bound_addresses["trap"][1]
        async with open_stream(client) as stream:
            ready = await stream.until("ready")
            assert ready[-1].data == {"resumed": 0, "live": True}
            await snmptrap(snmp_catalog, "linkDown", port, SW1)
            first = await stream.next()
            assert first.event == "outcome"
            assert first.id
            assert first.data["subject"].startswith("reflex.link_down.logged.sw1-north.")
            outcome = first.data["outcome"]
            assert (outcome["device"], outcome["site"]) == ("sw1-north", "dc-north")
            assert outcome["severity"] == "high"

            await snmptrap(snmp_catalog, "linkDown", port, SW2)
            got = await stream.until("incident")
            incident = got[-1]
            assert incident.data["transition"] == "opened"
            assert incident.data["subject"] == (
                f"incident.opened.{incident.data['incident']['incident_id']}"
            )
            body = incident.data["incident"]
            assert body["rule"] == "cable_pair"
            assert set(body["members"]) == {
                "sw1-north|GigabitEthernet1/0/3",
                "sw2-north|GigabitEthernet1/0/3",
            }
            assert outcome["outcome_id"] in body["evidence"]
            if ("link_down", "sw2-north") not in {key(m) for m in got}:
                # the incident may overtake the outcome that caused it (separate tasks)
                late = await stream.next()
                assert key(late) == ("link_down", "sw2-north")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_filters_include_and_exclude(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """site, device, subject and severity filters, each on its own connection, get
    exactly their share of: linkUp r1-south (info), linkDown r1-south, linkDown
    sw1-north, linkDown sw2-north (+ the cable incident). Traps go one at a time
    (the unfiltered client sees each before the next), so an excluded message would
    arrive before the expected ones."""
    filters: dict[str, Any] = {
        "all": None,
        "site": {"site": "dc-north"},
        "device": {"device": "sw2-north"},
        "subject": {"subject": ["incident.>"]},
        "severity": {"severity": "high"},
        "two_subjects": {"subject": ["reflex.link_up.>", "incident.opened.*"]},
    }
    expected = {
        "site": {("link_down", "sw1-north"), ("link_down", "sw2-north"), ("incident", "opened")},
        "device": {("link_down", "sw2-north"), ("incident", "opened")},
        "subject": {("incident", "opened")},
        "severity": {
            ("link_down", "r1-south"),
            ("link_down", "sw1-north"),
            ("link_down", "sw2-north"),
            ("incident", "opened"),
        },
        "two_subjects": {("link_up", "r1-south"), ("incident", "opened")},
    }
    async with running(tmp_path, bus_overrides(backend, request)) as (engine, client):
        port = engine.bound_addresses["trap"][1]
        async with contextlib.AsyncExitStack() as stack:
            streams = {
                name: await stack.enter_async_context(open_stream(client, params))
                for name, params in filters.items()
            }
            for stream in streams.values():
                await stream.until("ready")
            reference = streams["all"]
            seen: set[tuple[str, str]] = set()
            for trap, agent, device in (
                ("linkUp", R1_SOUTH, "r1-south"),
                ("linkDown", R1_SOUTH, "r1-south"),
                ("linkDown", SW1, "sw1-north"),
                ("linkDown", SW2, "sw2-north"),
            ):
                handler = "link_up" if trap == "linkUp" else "link_down"
                await snmptrap(snmp_catalog, trap, port, agent)
                while (handler, device) not in seen:
                    seen.add(key(await reference.next()))
            while ("incident", "opened") not in seen:
                seen.add(key(await reference.next()))
            for name, want in expected.items():
                got: list[tuple[str, str]] = []
                while not want <= set(got):
                    got.append(key(await streams[name].next()))
                    assert set(got) <= want, (name, got)
                assert len(got) == len(want), (name, got)


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize("backend", BACKENDS)
async def test_resume_sends_exactly_the_missed_outcomes(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Reconnecting with Last-Event-ID after two outcomes happened while disconnected
    sends exactly those two, oldest first, then ``ready`` (resumed 2), then live ones
    without duplicates; the header and ``?last_event_id=`` both work."""
    async with running(tmp_path, bus_overrides(backend, request)) as (engine, client):
        port = engine.bound_addresses["trap"][1]
        async with open_stream(client) as stream:
            await stream.until("ready")
            send_datagrams(port, [v2c_link_down(1, 11)])
            first = await stream.next()
            assert first.event == "outcome"
        resume_id = first.id
        assert resume_id is not None
        send_datagrams(port, [v2c_link_down(2, 12), v2c_link_down(3, 13)])
        outcomes = await stored(engine, 3)
        missed = [o.outcome_id for o in outcomes[1:]]
        assert first.data["outcome"]["outcome_id"] == outcomes[0].outcome_id

        async with open_stream(client, headers={"Last-Event-ID": resume_id}) as stream:
            got = await stream.until("ready")
            assert [m.event for m in got] == ["outcome", "outcome", "ready"]
            assert [m.data["outcome"]["outcome_id"] for m in got[:2]] == missed
            assert got[-1].data == {"resumed": 2, "live": True}
            send_datagrams(port, [v2c_link_down(4, 14)])
            live = await stream.next()
            assert live.event == "outcome"
            fourth = live.data["outcome"]["outcome_id"]
            assert fourth not in missed
            last_id = live.id
        assert last_id is not None

        # Resuming from the newest id: nothing missed, nothing repeated.
        async with open_stream(client, params={"last_event_id": last_id}) as stream:
            got = await stream.until("ready")
            assert [m.event for m in got] == ["ready"]
            assert got[-1].data["resumed"] == 0
            send_datagrams(port, [v2c_link_down(5, 15)])
            live = await stream.next()
            assert live.data["outcome"]["outcome_id"] not in {*missed, fourth}


async def test_a_backlog_over_the_limit_starts_with_a_gap(tmp_path: Path) -> None:
    """With ``http.stream_max_backlog: 2`` and three outcomes missed, the resume sends
    ``gap`` (skipped 1) and then the newest two, oldest first."""
    async with running(tmp_path, {"backend": "memory"}, stream_max_backlog=2) as (
        engine,
        client,
    ):
        port = engine.bound_addresses["trap"][1]
        async with open_stream(client) as stream:
            await stream.until("ready")
            send_datagrams(port, [v2c_link_down(1, 41)])
            first = await stream.next()
        send_datagrams(port, [v2c_link_down(n, 40 + n) for n in (2, 3, 4)])
        outcomes = await stored(engine, 4)
        async with open_stream(client, headers={"Last-Event-ID": str(first.id)}) as stream:
            got = await stream.until("ready")
        assert [m.event for m in got] == ["gap", "outcome", "outcome", "ready"]
        assert got[0].data == {"skipped": 1}
        assert [m.data["outcome"]["outcome_id"] for m in got[1:3]] == [
            o.outcome_id for o in outcomes[2:]
        ]
        assert got[-1].data["resumed"] == 2


async def test_resume_includes_changed_incidents(
    tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """An incident opened while disconnected comes back as ``incident`` with
    ``"transition": "resumed"`` after the missed outcomes."""
    async with running(tmp_path, {"backend": "memory"}) as (engine, client):
        port = engine.bound_addresses["trap"][1]
        async with open_stream(client) as stream:
            await stream.until("ready")
            send_datagrams(port, [v2c_link_down(1, 21)])
            first = await stream.next()
        await snmptrap(snmp_catalog, "linkDown", port, SW1)
        await snmptrap(snmp_catalog, "linkDown", port, SW2)
        assert engine.incident_store is not None
        store = engine.incident_store

        async def opened() -> bool:
            return len(await store.open_incidents()) == 1

        await wait_for(opened, what="the cable incident")
        async with open_stream(client, headers={"Last-Event-ID": str(first.id)}) as stream:
            got = await stream.until("ready")
        assert [m.event for m in got] == ["outcome", "outcome", "incident", "ready"]
        assert {m.data["outcome"]["device"] for m in got[:2]} == {"sw1-north", "sw2-north"}
        assert got[2].data["transition"] == "resumed"
        assert got[2].data["incident"]["rule"] == "cable_pair"
        assert got[-1].data["resumed"] == 3


# ------------------------------------------------------------------ slow clients


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_client_that_never_reads_overflows_alone(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A client that never reads (tiny receive buffer) fills its queue: it gets
    ``overflow`` and is disconnected, while a reading client gets every outcome and the
    engine's outcome count keeps rising."""
    async with running(tmp_path, bus_overrides(backend, request), stream_queue_size=64) as (
        engine,
        client,
    ):
        host, http_port = engine.bound_addresses["http"]
        port = engine.bound_addresses["trap"][1]
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stuck.connect((host, http_port))
        stuck.sendall(
            b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + API_TOKEN.encode() + b"\r\n\r\n"
        )
        try:
            async with open_stream(client) as good:
                await good.until("ready")

                async def both_connected() -> bool:
                    return engine.stream_hub is not None and engine.stream_hub.clients == 2

                await wait_for(both_connected, what="two stream clients")
                received = 0
                sent = 0
                batch = 48  # below the queue size: the reading client never overflows
                while counter(engine, "netcortex_stream_overflows_total") < 1:
                    assert sent < 40_000, "the stuck client never overflowed"
                    payloads = [
                        v2c_link_down(sent + i + 1, 1 + (sent + i) % 5000) for i in range(batch)
                    ]
                    await asyncio.to_thread(send_datagrams, port, payloads)
                    sent += batch
                    while received < sent:
                        message = await good.next()
                        assert message.event == "outcome", message
                        received += 1
                before = counter(engine, "netcortex_reflex_outcomes_total")
                # The stuck client now reads: the overflow notice, then the end.
                stuck.setblocking(False)
                data = bytearray()
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(20):
                    while chunk := await loop.sock_recv(stuck, 65536):
                        data.extend(chunk)
                assert b"event: overflow" in data
                assert b'"dropped":' in data
                # The engine and the reading client carry on.
                payloads = [v2c_link_down(sent + i + 1, 6000 + i) for i in range(batch)]
                await asyncio.to_thread(send_datagrams, port, payloads)
                sent += batch
                while received < sent:
                    message = await good.next()
                    assert message.event == "outcome", message
                    received += 1
                assert counter(engine, "netcortex_reflex_outcomes_total") >= before + batch
                assert counter(engine, "netcortex_stream_overflows_total") == 1
                assert engine.stream_hub is not None
                assert engine.stream_hub.clients == 1
        finally:
            stuck.close()


async def test_stopping_the_engine_ends_open_streams(tmp_path: Path) -> None:
    """``Engine.stop`` ends every open stream first (reason ``server_stopping``), so the
    HTTP server's graceful stop is not held up by clients that never leave."""
    async with (
        running(tmp_path, {"backend": "memory"}) as (engine, client),
        open_stream(client) as stream,
    ):
        await stream.until("ready")
        stopping = asyncio.create_task(engine.stop())
        with pytest.raises(StopAsyncIteration):
            await stream.next(timeout=10)
        async with asyncio.timeout(10):
            await stopping
    assert counter(engine, "netcortex_stream_messages_total") == 0


# ------------------------------------------------------------------ status


async def test_status_numbers_move(tmp_path: Path, snmp_catalog: dict[str, Any]) -> None:
    """``GET /api/v1/status``: received rises with traps, a bad community bumps
    ``rejected_by_reason``, outbox is null (journal off), the cable opens one incident."""
    async with running(tmp_path, {"backend": "memory"}) as (engine, client):
        port = engine.bound_addresses["trap"][1]

        async def status() -> dict[str, Any]:
            resp = await client.get("/api/v1/status", headers=AUTH)
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            return body

        def trap_source(body: dict[str, Any]) -> dict[str, Any]:
            (row,) = [s for s in body["sources"] if s["source"] == "trap"]
            return row

        start = await status()
        assert start["outbox"] is None
        assert start["incidents"] == {"open": 0}
        assert start["inventory"]["backend"] == "file"
        assert start["inventory"]["devices"] == 8
        assert start["maintenance"] == {"active": [], "next": None}
        assert trap_source(start)["received"] == 0
        assert (await client.get("/api/v1/status")).status_code == 401

        send_datagrams(port, [v2c_link_down(1, 31), v2c_link_down(2, 32, community=b"wrong")])

        async def moved() -> dict[str, Any] | None:
            body = await status()
            row = trap_source(body)
            done = (
                row["received"] >= 2
                and row["rejected_by_reason"].get("bad_community") == 1
                and body["outcomes"]["total"] >= 1
            )
            return body if done else None

        body = await wait_for(moved, what="trap counters in /status")
        row = trap_source(body)
        assert row["rejected"] == 1
        assert row["received_per_s"] > 0
        assert row["rejected_per_s"] > 0
        assert body["outcomes"]["per_s"] > 0
        assert body["uptime_s"] > 0

        await snmptrap(snmp_catalog, "linkDown", port, SW1)
        await snmptrap(snmp_catalog, "linkDown", port, SW2)

        async def one_open() -> bool:
            return (await status())["incidents"] == {"open": 1}

        await wait_for(one_open, what="one open incident in /status")


# ------------------------------------------------------------------ the real process


def _stream_lines(lines: Iterator[str], until: str) -> list[str]:
    """Lines of an open stream up to and including the first line starting with ``until``.

    ``lines`` is one ``iter_lines()`` iterator kept for the whole stream: leaving a
    ``for`` loop over a fresh one closes it, and httpx then closes the connection.
    """
    got: list[str] = []
    for line in lines:
        got.append(line)
        if line.startswith(until):
            return got
    raise AssertionError(f"stream ended before {until!r}: {got}")


def test_stream_auth_limits_and_bad_values(tmp_path: Path) -> None:
    """In ``netcortex run`` (debug logs, one client at most): missing or wrong token →
    401 (header or ``access_token``); ``?access_token=`` works and appears in no log
    line; a second client → 503; a malformed Last-Event-ID or filter → 400."""
    overrides = {
        "http": {"stream_max_clients": 1, "stream_keepalive_seconds": 0.5},
        "log": {"level": "debug", "format": "json"},
    }
    with EngineProcess(tmp_path, overrides) as engine:
        url = "/api/v1/stream"
        http = engine.http
        assert http.get(url).status_code == 401
        wrong = http.get(url, headers={"Authorization": "Bearer not-the-token-at-all-x"})
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"] == "Bearer"
        assert http.get(url, params={"access_token": "not-the-token-at-all-x"}).status_code == 401
        with http.stream("GET", url, params={"access_token": API_TOKEN}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            stream_lines = resp.iter_lines()
            lines = _stream_lines(stream_lines, "data:")
            assert lines[0] == "retry: 2000"
            assert "event: ready" in lines
            engine.wait_for_log("stream_client_connected")
            full = engine.api("GET", url)
            assert full.status_code == 503
            assert "stream_max_clients" in full.json()["detail"]
            for params, headers, param in (
                ({}, {"Last-Event-ID": "not-an-id"}, "Last-Event-ID"),
                ({"last_event_id": "eyJ4Ijox"}, {}, "Last-Event-ID"),
                ({"severity": "loud"}, {}, "severity"),
                ({"subject": "sensory.>"}, {}, "subject"),
                ({"subject": "reflex..x"}, {}, "subject"),
            ):
                bad = engine.api("GET", url, params=params, headers=headers)
                assert bad.status_code == 400, (params, bad.text)
                assert bad.json()["detail"].startswith(f"{param}: "), bad.text
        closed = engine.wait_for_log("stream_client_closed")
        assert closed["reason"] == "client_closed"
        assert {"sent", "duration_s"} <= set(closed)
        assert engine.logs("http_request", path=url), "debug access log lines expected"
        engine.stop_cleanly()
        assert engine.secrets_in_logs(API_TOKEN) == []


class _Pipe:
    """Lines of a subprocess pipe, read by a thread, waited for with a deadline."""

    def __init__(self, stream: Any) -> None:
        import queue
        import threading

        self.lines: queue.Queue[str] = queue.Queue()
        self._stream = stream
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def close(self) -> None:
        """After the process exited: let the reader reach EOF, then close the pipe."""
        self._thread.join(timeout=10)
        self._stream.close()

    def wait(self, check: Callable[[str], bool], timeout: float = 15.0) -> str:
        import queue

        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching line within {timeout}s; saw {seen}") from None
            seen.append(line)
            if check(line):
                return line


def test_tail_json_prints_a_trap_sent_after_it_connected(
    tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """``netcortex tail --json`` (a subprocess, token from the engine's config) prints the
    outcome of a trap sent once it is live, as one JSON line; Ctrl-C exits 0. A wrong
    token exits 2 with a clear message."""
    import signal
    import subprocess
    import sys

    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    with EngineProcess(tmp_path, {"inventory": inventory}) as engine:
        base = [sys.executable, "-m", "netcortex", "tail", "--config", str(engine.config_path)]
        env = {k: v for k, v in engine.env.items() if k != "NO_COLOR"}
        refused = subprocess.run(
            [*base, "--url", engine.base_url, "--token", "not-the-token-at-all-x"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        assert refused.returncode == 2, refused
        assert "refused the API token" in refused.stderr

        proc = subprocess.Popen(
            [*base, "--url", engine.base_url, "--json", "--device", "sw1-north"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        out, err = _Pipe(proc.stdout), _Pipe(proc.stderr)
        try:
            err.wait(lambda line: "live" in line)
            send_traps_v1 = snmptrap_argv(
                catalog_command(snmp_catalog, "linkDown", "v1"), engine.trap_port
            )
            subprocess.run(send_traps_v1, check=True, capture_output=True, timeout=10)
            line = out.wait(lambda text: text.startswith("{"))
            message = json.loads(line)
            assert message["event"] == "outcome"
            assert message["id"]
            assert message["outcome"]["device"] == "sw1-north"
            assert message["outcome"]["handler_id"] == "link_down"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()
        engine.stop_cleanly()
