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
then cancel what is left and close its connections. A request whose body is
still arriving is not in flight yet: it is answered 503 and closed at once (a
slow client cannot hold the stop for the whole grace period).

Limits uvicorn's httptools protocol lacks (the webhook port may face the
internet, and every byte a client makes the engine hold is memory the reflexes
need), added by ``_GuardedHttpToolsProtocol``:

* **request timeout**: a request must arrive whole — request line, headers and
  body — within ``request_timeout`` seconds of the connection opening (or of its
  first byte, for the next request on a keep-alive connection). Otherwise the
  client gets ``408`` (when no answer has begun) and the connection is closed.
  uvicorn itself only times out *idle* keep-alive connections, so a client that
  connects and says nothing, trickles its headers (slowloris) or announces a
  ``Content-Length`` longer than what it sends would hold a connection and a
  request task forever (and delay a graceful stop to its timeout).
* **head size**: the request line plus headers may total ``max_head_bytes``;
  beyond it the client gets ``431`` and the connection is closed. httptools
  enforces no limit, so one connection sending endless headers grew the
  process by as much as it sent.
* **discarded body**: when the app answers before reading the whole body (a
  413 over ``http.max_body_bytes``), uvicorn reads and drops the rest to keep
  the connection usable — up to the ``Content-Length`` announced (gigabytes)
  or for as long as a chunked body flows. Past ``max_discard_bytes`` (by
  default four times ``http.max_body_bytes``) the connection is closed
  instead. (Closing at once would lose the 413 for an ordinary client still
  sending: the unread data turns the close into a TCP reset.)

Each connection refused this way, and each request httptools cannot parse (uvicorn
answers those 400), counts in
``netcortex_http_refused_total{reason}`` (``request_timeout``,
``head_too_large``, ``discard_limit``, ``bad_request``, ``stopping``) and logs
one **debug** line. uvicorn's own per-request warnings ("Invalid HTTP request received.",
"Unsupported upgrade request." and its advice to install a WebSocket library)
are dropped: any client could write them into the log as fast as it can send
requests. uvicorn's errors (a broken response, a graceful-shutdown timeout) are
still logged.

Client addresses: ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are honoured only
from the addresses in ``trusted_proxies`` (default: none). uvicorn's default
trusts them from 127.0.0.1 and ``::1`` (or from whatever the
``FORWARDED_ALLOW_IPS`` environment variable says), which let any local
process — or a client of a local proxy that passes the header through — pick
the ``peer`` the webhook receiver logs and rate-limits by. An operator behind a
reverse proxy lists the proxy's address; everyone else gets the socket's peer.

May import: ``config``, ``metrics`` and third-party HTTP libraries (uvicorn, httptools).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final

import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from netcortex.config import HttpConfig
from netcortex.metrics import Counter, Registry

__all__ = ["HttpServer"]

log = structlog.get_logger(__name__)


#: Default longest time a client may take to send one whole request (seconds).
REQUEST_TIMEOUT: Final = 15.0
#: Default largest request line plus headers accepted (bytes).
MAX_HEAD_BYTES: Final = 64 * 1024
#: Most body bytes read and dropped after an early answer, by default: this many
#: times ``http.max_body_bytes`` (a client a little over the cap still reads its 413).
DISCARD_FACTOR: Final = 4


def _plain_answer(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)


_TIMEOUT_ANSWER: Final = _plain_answer(408, b"Request Timeout")
_STOPPING_ANSWER: Final = _plain_answer(503, b"Service Unavailable")
_HEAD_TOO_LARGE_ANSWER: Final = _plain_answer(431, b"Request Header Fields Too Large")

#: The connections' uvicorn logger: errors only (its warnings are client-triggered).
_PROTOCOL_LOG: Final = logging.getLogger("uvicorn.error.connection")
_PROTOCOL_LOG.setLevel(logging.ERROR)


class _GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a whole-request deadline, a head-size cap, a
    bound on discarded body bytes, counted refusals and quiet client errors.

    See the module docstring. The limits and the counter are set on a per-server
    subclass (``_guarded_protocol``): uvicorn builds protocols from a class and
    its own arguments.
    """

    request_timeout: ClassVar[float] = REQUEST_TIMEOUT
    max_head_bytes: ClassVar[int] = MAX_HEAD_BYTES
    max_discard_bytes: ClassVar[int] = DISCARD_FACTOR * 1024 * 1024
    refused: ClassVar[Counter | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _PROTOCOL_LOG
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._discarded = 0
        self._head_done = False  # self.cycle is the request being received
        self._refused = False

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._request_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _note(self, reason: str) -> None:
        """Count and debug-log one refusal."""
        if self.refused is not None:
            self.refused.inc(reason=reason)
        log.debug("http_refused", reason=reason, peer=self.client[0] if self.client else None)

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.pipeline:
            # A pipelined request waits (reading paused) for the one before it to be
            # answered: that is the app's time, not the client's.
            self._arm()
            return
        cycle = self.cycle
        if self._head_done:
            # This request's own cycle: answer 408 unless the app has begun (or sent)
            # its answer, e.g. a 413 while the refused body still trickles in.
            answer = cycle is not None and not cycle.response_started
        else:
            # The head is incomplete; the cycle (if any) is the previous request's:
            # never write into the middle of its answer.
            answer = cycle is None or cycle.response_complete
        if answer:
            self.transport.write(_TIMEOUT_ANSWER)
        self._note("request_timeout")
        self.transport.close()

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm()
        self._note("head_too_large")
        self.transport.write(_HEAD_TOO_LARGE_ANSWER)
        self.transport.close()

    def _stop_discarding(self) -> None:
        self._refused = True
        self._disarm()
        self._note("discard_limit")
        self.transport.close()

    def shutdown(self) -> None:
        # The server is stopping. A request still being received (its body has not
        # all arrived, nothing answered yet) is not in flight: the app has committed
        # to nothing (the webhook route reads the whole body before the receiver
        # sees it). Answer 503 (Meraki retries) and close, rather than hold the stop
        # for the whole grace period and then cancel the task with a traceback.
        cycle = self.cycle
        if (
            self._head_done
            and self._deadline is not None
            and cycle is not None
            and not cycle.response_started
        ):
            self._refused = True
            self._disarm()
            self._note("stopping")
            self.transport.write(_STOPPING_ANSWER)
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request httptools cannot parse (then it closes).
        self._disarm()
        self._note("bad_request")
        super().send_400_response(msg)

    def _count_head(self, size: int) -> bool:
        """Add ``size`` head bytes; ``False`` (and the connection refused) over the cap."""
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refuse_head()
            return False
        return True

    # -- uvicorn / httptools callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # closing: the rest of the client's bytes are not parsed
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_bytes = self._discarded = 0
        self._head_done = False
        self._arm()

    def on_url(self, url: bytes) -> None:
        if not self._refused and self._count_head(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused and self._count_head(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._refused:
            super().on_headers_complete()
            self._head_done = True

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._head_done and self.cycle is not None and self.cycle.response_complete:
            # Answered before the body was read: uvicorn drops these bytes.
            self._discarded += len(body)
            if self._discarded > self.max_discard_bytes:
                self._stop_discarding()
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()


def _guarded_protocol(
    request_timeout: float,
    max_head_bytes: int,
    max_discard_bytes: int,
    refused: Counter | None,
) -> type[_GuardedHttpToolsProtocol]:
    """A protocol class with these limits (one per server: uvicorn takes a class)."""
    return type(
        "GuardedHttpToolsProtocol",
        (_GuardedHttpToolsProtocol,),
        {
            "request_timeout": request_timeout,
            "max_head_bytes": max_head_bytes,
            "max_discard_bytes": max_discard_bytes,
            "refused": refused,
        },
    )


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
        request_timeout: longest a client may take to send one whole request
            (seconds; then 408 and the connection is closed).
        max_head_bytes: largest request line plus headers (bytes; beyond: 431).
        max_discard_bytes: most body bytes dropped after an early answer before
            the connection is closed (bytes; default ``DISCARD_FACTOR`` times
            ``config.max_body_bytes``).
        trusted_proxies: addresses (or networks, or ``*``) whose
            ``X-Forwarded-For``/``-Proto`` are believed; empty (the default): none
            are, ``request.client`` is always the socket's peer.
        metrics: where ``netcortex_http_refused_total`` is counted (none: not counted).

    Construction does no I/O; ``start`` binds and serves, ``close`` stops.
    """

    def __init__(
        self,
        app: Any,
        config: HttpConfig,
        *,
        shutdown_timeout: float = 5.0,
        start_timeout: float = 10.0,
        request_timeout: float = REQUEST_TIMEOUT,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_discard_bytes: int | None = None,
        trusted_proxies: Sequence[str] = (),
        metrics: Registry | None = None,
    ) -> None:
        if not request_timeout > 0:
            raise ValueError("request_timeout must be > 0 seconds")
        if max_head_bytes < 1024:
            raise ValueError("max_head_bytes must be at least 1024")
        self._app = app
        self._config = config
        self._shutdown_timeout = shutdown_timeout
        self._start_timeout = start_timeout
        if max_discard_bytes is None:
            max_discard_bytes = DISCARD_FACTOR * config.max_body_bytes
        if max_discard_bytes < 0:
            raise ValueError("max_discard_bytes must be >= 0")
        refused = (
            metrics.counter(
                "netcortex_http_refused_total",
                "HTTP connections refused before the app: slow, oversized or unparsable requests",
                ["reason"],
            )
            if metrics is not None
            else None
        )
        self._protocol = _guarded_protocol(
            request_timeout, max_head_bytes, max_discard_bytes, refused
        )
        self._trusted_proxies = list(trusted_proxies)
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
            http=self._protocol,
            ws="none",
            # Never uvicorn's default (trust 127.0.0.1 and ::1, or $FORWARDED_ALLOW_IPS).
            proxy_headers=bool(self._trusted_proxies),
            forwarded_allow_ips=self._trusted_proxies or None,
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
