"""Bridge, HTTP: the app's two pure-ASGI middlewares — observability and the body cap.

``ObservabilityMiddleware``: request latency, access log, last-resort 500.

A pure ASGI callable (Starlette's ``BaseHTTPMiddleware`` costs a task and a
stream copy per request, too much at thousands of webhooks a second). Per HTTP
request it:

* observes ``netcortex_http_request_seconds{route,method,status}``, where
  ``route`` is the matched route's template (``/api/v1/outcomes/{outcome_id}``),
  never the raw path, so ids do not grow the label set (a fixed path of a
  plain Starlette route such as the OpenAPI document is its own template;
  anything else unmatched is ``route="unmatched"``);
* logs ``http_request`` (method, path, route, status, ms) at **debug**: at
  2,000 requests a second an info line each would drown everything else;
* turns any exception that escapes the app into ``500 {"detail": "internal
  error"}`` plus one ``http_unhandled_error`` line with the traceback, and does
  not re-raise, so uvicorn never sees it and the server keeps serving.

``BodyCapMiddleware``: request bodies over ``http.max_body_bytes`` are refused
with ``413 {"detail": ...}`` — at once when ``Content-Length`` says so, else as
soon as the stream crosses the cap — before a route buffers them (FastAPI
reads a JSON body before it checks the bearer token). Paths that apply the cap
themselves (the webhook, which answers through its receiver) are exempt.

May import: ``metrics`` and structlog.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import structlog

from netcortex.metrics import Registry

__all__ = ["BodyCapMiddleware", "ObservabilityMiddleware"]

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods kept as they are in the ``method`` label; anything else is ``other``.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_INTERNAL_ERROR: Final = b'{"detail":"internal error"}'
_ERROR_START: Final[Message] = {
    "type": "http.response.start",
    "status": 500,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
    ],
}


class ObservabilityMiddleware:
    """Wraps an ASGI app: latency histogram, debug access log, exceptions → 500.

    Args:
        app: the wrapped ASGI app.
        metrics: where ``netcortex_http_request_seconds`` lives.
        fixed_paths: paths (without parameters) that are routes even when the
            router does not name its route in the scope (FastAPI does so only for
            its ``APIRoute``s; the OpenAPI and docs routes are plain ones).
    """

    def __init__(
        self, app: ASGIApp, metrics: Registry, fixed_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self._fixed = fixed_paths
        self._seconds = metrics.histogram(
            "netcortex_http_request_seconds",
            "HTTP request handling time (request start to response end) by route template",
            ["route", "method", "status"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            log.error(
                "http_unhandled_error",
                method=scope.get("method"),
                path=scope.get("path"),
                exc_info=True,
            )
            status = 500
            if not started:
                # Nothing sent yet: answer properly. Otherwise the connection is
                # dropped by uvicorn when the half-sent response ends here.
                try:
                    await send(_ERROR_START)
                    await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
                except Exception:  # the client went away meanwhile
                    log.debug("http_error_response_failed", exc_info=True)
        finally:
            elapsed = time.perf_counter() - t0
            template = getattr(scope.get("route"), "path", None)
            if template is None:
                path = scope.get("path")
                template = path if path in self._fixed else "unmatched"
            method = scope.get("method", "")
            if method not in _METHODS:
                method = "other"
            self._seconds.observe(elapsed, route=template, method=method, status=str(status))
            log.debug(
                "http_request",
                method=method,
                path=scope.get("path"),
                route=template,
                status=status,
                ms=round(elapsed * 1000, 3),
            )


def _json_answer(status: int, body: bytes) -> tuple[Message, Message]:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyCapMiddleware:
    """Refuses request bodies larger than ``max_bytes`` with a JSON 413.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted (``http.max_body_bytes``).
        exempt: paths that enforce the cap themselves.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._max = max_bytes
        self._exempt = exempt
        self._answer = _json_answer(
            413, b'{"detail":"request body larger than http.max_body_bytes (%d bytes)"}' % max_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._exempt:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._max:
                for message in self._answer:
                    await send(message)
                return
        seen = 0
        started = answered = False

        async def capped_receive() -> Message:
            # Crossing the cap: answer 413 now and tell the app the client is gone,
            # so it stops reading (an exception here would be turned into a 400 by
            # FastAPI's body parsing).
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    if not started:
                        answered = True
                        for reply in self._answer:
                            await send(reply)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is out; whatever the app says now goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not answered:
                raise
            # The app failed on the disconnect it was fed: expected, already answered.
