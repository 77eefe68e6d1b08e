"""Unit tests for ``netcortex.bridge.http.server.HttpServer`` (real uvicorn, real sockets)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from netcortex.bridge.http import HttpServer
from netcortex.config import HttpConfig
from netcortex.metrics import Counter, Registry


class EchoApp:
    """Reads the whole body, then answers ``<client host> <body length>``; notes disconnects.
    ``/early`` answers 413 at once, body unread."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.entered.set()
        if scope["path"] == "/early":  # refuses without reading the body, as a 413 does
            await send({"type": "http.response.start", "status": 413, "headers": []})
            await send({"type": "http.response.body", "body": b"early"})
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        client = scope.get("client") or ("-", 0)
        body = f"{client[0]} {size}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def exchange(
    server: HttpServer, data: bytes, *, until_closed: float = 5.0
) -> tuple[bytes, float]:
    """Send raw ``data`` on a new connection; what comes back until the server closes it
    (failing after ``until_closed`` seconds), and how long that took."""
    host, port = server.bound_address
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    t0 = loop.time()
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), until_closed)  # read() = until EOF
    finally:
        writer.close()
    return answer, loop.time() - t0


@pytest.fixture
def registry() -> Registry:
    """The metrics registry of ``echo_server``."""
    return Registry()


def refused(registry: Registry, reason: str) -> float:
    """``netcortex_http_refused_total{reason}``."""
    metric = registry.get("netcortex_http_refused_total")
    return metric.value(reason=reason) if isinstance(metric, Counter) else 0.0


@pytest.fixture
async def echo_server(registry: Registry) -> AsyncIterator[tuple[HttpServer, EchoApp]]:
    """A started HttpServer with tight request limits (0.3 s, 2 KiB head) serving EchoApp."""
    app = EchoApp()
    server = HttpServer(
        app,
        HttpConfig(host="127.0.0.1", port=0),
        shutdown_timeout=1.0,
        request_timeout=0.3,
        max_head_bytes=2048,
        metrics=registry,
    )
    await server.start()
    yield server, app
    await server.close()


class GateApp:
    """A tiny ASGI app: ``/slow`` answers only once ``release`` is set; else 200 at once."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/slow":
            self.entered.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


@pytest.fixture
async def gate_server() -> AsyncIterator[tuple[HttpServer, GateApp]]:
    """A started HttpServer on 127.0.0.1, port 0, serving a GateApp."""
    app = GateApp()
    server = HttpServer(app, HttpConfig(host="127.0.0.1", port=0), shutdown_timeout=1.0)
    await server.start()
    yield server, app
    app.release.set()
    await server.close()


def url(server: HttpServer, path: str) -> str:
    """The URL of ``path`` on ``server``."""
    host, port = server.bound_address
    return f"http://{host}:{port}{path}"


class TestHttpServer:
    async def test_port_zero_is_bound_and_serves(
        self, gate_server: tuple[HttpServer, GateApp]
    ) -> None:
        """Port 0 becomes a real port, readable before the first request, and it serves."""
        server, _ = gate_server
        host, port = server.bound_address
        assert host == "127.0.0.1"
        assert port > 0
        async with httpx.AsyncClient() as client:
            response = await client.get(url(server, "/"))
        assert (response.status_code, response.text) == (200, "done")
        assert "server" not in response.headers  # no uvicorn banner

    def test_bound_address_before_start_is_an_error(self) -> None:
        """Asking for the address of a server that never started raises."""
        server = HttpServer(GateApp(), HttpConfig(port=0))
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.bound_address

    async def test_port_in_use_fails_start_with_oserror(self) -> None:
        """A taken port makes start raise OSError at once (nothing left running)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            server = HttpServer(
                GateApp(), HttpConfig(host="127.0.0.1", port=taken.getsockname()[1])
            )
            with pytest.raises(OSError, match=r"in use|Errno"):
                await server.start()
            await server.close()  # safe after a failed start

    async def test_signals_stay_with_the_caller(self) -> None:
        """Serving neither replaces nor restores the SIGINT/SIGTERM handlers (the CLI owns
        them), so uvicorn cannot swallow or re-raise the engine's signals."""
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        server = HttpServer(GateApp(), HttpConfig(host="127.0.0.1", port=0))
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                assert (await client.get(url(server, "/"))).status_code == 200
            assert {sig: signal.getsignal(sig) for sig in before} == before
        finally:
            await server.close()
        assert {sig: signal.getsignal(sig) for sig in before} == before

    async def test_close_lets_an_in_flight_request_finish(
        self, gate_server: tuple[HttpServer, GateApp]
    ) -> None:
        """close() stops accepting but the request being handled still gets its answer."""
        server, app = gate_server
        async with httpx.AsyncClient() as client:
            pending = asyncio.create_task(client.get(url(server, "/slow")))
            await asyncio.wait_for(app.entered.wait(), 5)
            closing = asyncio.create_task(server.close())
            await asyncio.sleep(0)  # close() has begun; the request is still waiting
            assert not closing.done()
            app.release.set()
            response = await asyncio.wait_for(pending, 5)
            await asyncio.wait_for(closing, 5)
        assert (response.status_code, response.text) == (200, "done")
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(url(server, "/"))

    async def test_close_is_bounded_when_a_request_hangs(
        self, gate_server: tuple[HttpServer, GateApp]
    ) -> None:
        """A request that never finishes is cancelled after the shutdown timeout (the client
        gets a 500 or a dropped connection, never a hang)."""
        server, app = gate_server
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient() as client:
            pending = asyncio.create_task(client.get(url(server, "/slow")))
            await asyncio.wait_for(app.entered.wait(), 5)
            t0 = loop.time()
            await asyncio.wait_for(server.close(), 10)
            elapsed = loop.time() - t0
            try:
                response = await asyncio.wait_for(pending, 5)
            except httpx.HTTPError:
                pass  # dropped: also an answer
            else:
                assert response.status_code == 500
        assert 0.9 <= elapsed < 4.0

    async def test_close_is_idempotent_and_safe_without_start(self) -> None:
        """close() twice, or on a server never started, does nothing."""
        server = HttpServer(GateApp(), HttpConfig(port=0))
        await server.close()
        await server.close()


class TestRequestLimits:
    """Limits uvicorn's httptools protocol does not have (see ``server.py``)."""

    async def test_a_silent_connection_is_closed(
        self, echo_server: tuple[HttpServer, EchoApp], registry: Registry
    ) -> None:
        """A client that connects and sends nothing is answered 408 and closed."""
        server, _ = echo_server
        answer, elapsed = await exchange(server, b"")
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert elapsed < 3.0
        assert refused(registry, "request_timeout") == 1

    async def test_trickled_headers_are_cut_off(
        self, echo_server: tuple[HttpServer, EchoApp]
    ) -> None:
        """Headers that never end (slowloris) do not hold the connection past the deadline,
        even with bytes still arriving."""
        server, _ = echo_server
        host, port = server.bound_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            closed = asyncio.create_task(reader.read())
            for i in range(100):  # a header every 20 ms: each one resets no timer
                if closed.done():
                    break
                writer.write(b"X-Drip-%d: 1\r\n" % i)
                await asyncio.wait({closed}, timeout=0.02)
            answer = await asyncio.wait_for(closed, 5)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")

    async def test_a_body_shorter_than_its_content_length_is_cut_off(
        self, echo_server: tuple[HttpServer, EchoApp]
    ) -> None:
        """A Content-Length longer than what arrives: 408, the connection closed, and the
        app sees the disconnect (its request task ends) instead of waiting forever."""
        server, app = echo_server
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        answer, elapsed = await exchange(server, request)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert elapsed < 3.0
        await asyncio.wait_for(app.disconnected.wait(), 5)

    async def test_a_trickling_refused_body_gets_no_second_answer(
        self, echo_server: tuple[HttpServer, EchoApp]
    ) -> None:
        """The app answered early (413) and the body trickles past the deadline: the
        connection is closed without a 408 written after the 413."""
        server, _ = echo_server
        request = b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        answer, _ = await exchange(server, request)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.count(b"HTTP/1.1 ") == 1

    async def test_a_prompt_request_is_served_and_kept_alive(
        self, echo_server: tuple[HttpServer, EchoApp]
    ) -> None:
        """The deadline is per request: a keep-alive connection idle between requests for
        longer than request_timeout is still served (uvicorn's keep-alive rules apply)."""
        server, _ = echo_server
        async with httpx.AsyncClient() as client:
            first = await client.post(url(server, "/"), content=b"abc")
            await asyncio.sleep(0.5)  # longer than request_timeout, shorter than keep-alive
            second = await client.post(url(server, "/"), content=b"abcd")
        assert (first.text, second.text) == ("127.0.0.1 3", "127.0.0.1 4")

    async def test_an_oversized_head_is_431(
        self, echo_server: tuple[HttpServer, EchoApp], registry: Registry
    ) -> None:
        """Headers past max_head_bytes: 431 and closed, the rest unread (httptools alone
        buffered every header sent); the server keeps serving others."""
        server, _ = echo_server
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: %s\r\n" % (b"a" * 1000) * 50
        answer, _ = await exchange(server, head + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        long_url = b"GET /" + b"a" * 4096 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        answer, _ = await exchange(server, long_url)
        assert answer.startswith(b"HTTP/1.1 431 ")
        async with httpx.AsyncClient() as client:
            assert (await client.get(url(server, "/"))).status_code == 200
        assert refused(registry, "head_too_large") == 2

    async def test_client_mistakes_are_counted_not_warned(
        self,
        echo_server: tuple[HttpServer, EchoApp],
        registry: Registry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Unparsable requests and Upgrade headers cost a counter, not warnings any client
        could write into the log at will (uvicorn warned on each, and advised installing
        a WebSocket library)."""
        server, _ = echo_server
        caplog.set_level(logging.DEBUG)
        garbage, _ = await exchange(server, b"\x16\x03\x01 not http\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        async with httpx.AsyncClient() as client:
            upgrade = await client.get(
                url(server, "/"), headers={"Connection": "Upgrade", "Upgrade": "websocket"}
            )
        assert upgrade.status_code == 200  # served as plain HTTP
        assert refused(registry, "bad_request") == 1
        loud = [r for r in caplog.records if r.name.startswith("uvicorn")]
        assert [r for r in loud if r.levelno >= logging.WARNING] == []

    async def test_forwarded_headers_are_ignored_by_default(
        self, echo_server: tuple[HttpServer, EchoApp]
    ) -> None:
        """X-Forwarded-For from loopback does not change the client address (uvicorn's
        default would believe it, and FORWARDED_ALLOW_IPS could widen that)."""
        server, _ = echo_server
        async with httpx.AsyncClient() as client:
            response = await client.get(url(server, "/"), headers={"X-Forwarded-For": "6.6.6.6"})
        assert response.text == "127.0.0.1 0"

    async def test_forwarded_headers_from_a_trusted_proxy(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the proxy's address in trusted_proxies, X-Forwarded-For is the client; the
        environment variable plays no part either way."""
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
        for trusted, expected in (((), "127.0.0.1 0"), (("127.0.0.1",), "6.6.6.6 0")):
            server = HttpServer(
                EchoApp(), HttpConfig(host="127.0.0.1", port=0), trusted_proxies=trusted
            )
            await server.start()
            try:
                async with httpx.AsyncClient() as client:
                    response = await client.get(
                        url(server, "/"), headers={"X-Forwarded-For": "6.6.6.6"}
                    )
            finally:
                await server.close()
            assert response.text == expected, trusted

    async def test_stop_does_not_wait_for_a_body_still_arriving(self, registry: Registry) -> None:
        """close() answers a request whose body is still on its way 503 and closes it at
        once, instead of holding the stop for shutdown_timeout and then cancelling it."""
        app = EchoApp()
        server = HttpServer(
            app,
            HttpConfig(host="127.0.0.1", port=0),
            shutdown_timeout=3.0,
            request_timeout=60.0,
            metrics=registry,
        )
        await server.start()
        host, port = server.bound_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            await writer.drain()
            await asyncio.wait_for(app.entered.wait(), 5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.wait_for(server.close(), 10)
            elapsed = loop.time() - t0
            answer = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert elapsed < 1.5  # not the 3 s grace period
        assert refused(registry, "stopping") == 1
        await asyncio.wait_for(app.disconnected.wait(), 5)

    def test_limits_are_validated(self) -> None:
        """A zero timeout or a tiny head cap is a programming error."""
        with pytest.raises(ValueError, match="request_timeout"):
            HttpServer(EchoApp(), HttpConfig(port=0), request_timeout=0)
        with pytest.raises(ValueError, match="max_head_bytes"):
            HttpServer(EchoApp(), HttpConfig(port=0), max_head_bytes=10)
