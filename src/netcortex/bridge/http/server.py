"""Bridge, HTTP: ``HttpServer`` — uvicorn serving one ASGI app inside the engine's loop.

The server binds its TCP socket itself in ``start`` (so a port in use fails
``Engine.start`` at once with ``OSError``, and port 0 becomes the kernel's
choice, read back as ``bound_address``), then runs ``uvicorn.Server.serve`` on
that socket as a task in the running loop: httptools parser, no lifespan, no
uvicorn logging set-up, no access log (the app's middleware logs requests), no
``Server`` header.

Signals belong to the engine's CLI (``netcortex run`` drains on the first
SIGINT/SIGTERM): uvicorn's ``Server.serve`` would install its own handlers and
re-raise captured signals afterwards, so ``_EmbeddedServer`` turns
``capture_signals`` into a no-op.

``close`` is a graceful shutdown: stop accepting, close idle keep-alive
connections, let in-flight requests finish (bounded by ``shutdown_timeout``),
then cancel what is left and close its connections.

May import: ``config`` and third-party HTTP libraries (uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn

from netcortex.config import HttpConfig

__all__ = ["HttpServer"]

log = structlog.get_logger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """``uvicorn.Server`` that leaves signals alone and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The engine's CLI owns SIGINT/SIGTERM; uvicorn must neither take them nor
        # re-raise them after serve() returns.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


def _bind(host: str, port: int) -> socket.socket:
    """A bound, non-blocking TCP socket for ``host``/``port`` (``OSError`` when taken)."""
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting right after a stop must not fail on TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            # "::" serves IPv6 and IPv4-mapped clients alike.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpServer:
    """Runs an ASGI app under uvicorn in the current event loop.

    Args:
        app: the ASGI application (``create_app(...)``).
        config: the ``http`` section (``host``, ``port``).
        shutdown_timeout: longest ``close`` waits for in-flight requests (seconds).
        start_timeout: longest ``start`` waits for uvicorn to listen (seconds).

    Construction does no I/O; ``start`` binds and serves, ``close`` stops.
    """

    def __init__(
        self,
        app: Any,
        config: HttpConfig,
        *,
        shutdown_timeout: float = 5.0,
        start_timeout: float = 10.0,
    ) -> None:
        self._app = app
        self._config = config
        self._shutdown_timeout = shutdown_timeout
        self._start_timeout = start_timeout
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound: tuple[str, int] | None = None

    @property
    def bound_address(self) -> tuple[str, int]:
        """``(host, port)`` the socket is bound to (the real port when 0 was asked).

        Raises:
            RuntimeError: not started.
        """
        if self._bound is None:
            raise RuntimeError("HttpServer is not started")
        return self._bound

    async def start(self) -> None:
        """Bind the socket and serve until ``close``. Idempotent.

        Raises:
            OSError: the address cannot be bound (port in use, no such address).
            RuntimeError: uvicorn stopped before it listened.
            TimeoutError: uvicorn did not listen within ``start_timeout``.
        """
        if self._task is not None:
            return
        sock = _bind(self._config.host, self._config.port)
        host, port = sock.getsockname()[:2]
        uv_config = uvicorn.Config(
            self._app,
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, math.ceil(self._shutdown_timeout)),
        )
        server = _EmbeddedServer(uv_config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
        self._server, self._task = server, task
        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait(
                {task, listening},
                timeout=self._start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        if not server.listening.is_set():
            # uvicorn failed (or hung) before listening: stop it, free the socket.
            self._server = self._task = None
            server.should_exit = True
            hung = not task.done()
            if hung:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sock.close()
            if hung:
                raise TimeoutError(f"HTTP server did not listen within {self._start_timeout:g} s")
            error = None if task.cancelled() else task.exception()
            raise RuntimeError(f"HTTP server stopped before listening: {error!r}") from error
        self._bound = (str(host), int(port))
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        """Say so when uvicorn stops on its own (not through ``close``)."""
        if self._task is not task:
            return  # close() asked for it
        error = None if task.cancelled() else task.exception()
        log.error(
            "http_server_stopped",
            error=type(error).__name__ if error else None,
            detail=str(error) if error else "uvicorn returned",
            exc_info=error,
        )

    async def close(self) -> None:
        """Stop accepting, finish in-flight requests (bounded), then force. Idempotent."""
        server, task = self._server, self._task
        self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            # uvicorn bounds the graceful part itself (timeout_graceful_shutdown);
            # the extra second covers its 0.1 s tick and connection teardown.
            async with asyncio.timeout(self._shutdown_timeout + 1.0):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("http_shutdown_forced", connections=len(server.server_state.connections))
            server.force_exit = True
            task.cancel()
        except Exception:
            log.error("http_server_failed", exc_info=True)
        await asyncio.gather(task, return_exceptions=True)
        # Connections still open (a request cancelled by the timeout) are closed now.
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()
