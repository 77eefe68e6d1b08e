"""Unit tests for ``netcortex.bridge.http.server.HttpServer`` (real uvicorn, real sockets)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from netcortex.bridge.http import HttpServer
from netcortex.config import HttpConfig


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
