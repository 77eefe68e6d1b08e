"""Bridge, HTTP: bearer-token authentication for ``/api/v1/*`` and ``/metrics``.

``Authorization: Bearer <http.api_token>``, compared in constant time
(``hmac.compare_digest`` on bytes). A missing or wrong token is answered 401 with
``WWW-Authenticate: Bearer``; no token configured is 403 (fail closed: the API
is never open by accident). Each refusal counts in
``netcortex_rejected_total{source="http.api",reason}`` (``missing_token``,
``bad_token``, ``no_token_configured``) and is logged as ``api_auth_rejected`` at
most once per (peer, reason) per ``log_interval`` seconds. The token itself is
never logged, echoed or put in an error body.

``bearer_auth(..., query_param="access_token")`` also accepts the token as that
query parameter when no ``Authorization`` header is sent (``GET /api/v1/stream``
only: browsers' ``EventSource`` cannot set headers); the same constant-time check
and refusal counters apply. Nothing logs a query string (the access log and the
refusal log name the path only), so the token stays out of the logs there too.

May import: ``config``, ``logs``, ``metrics`` and FastAPI.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from netcortex.bridge.http.models import Error
from netcortex.config import HttpConfig
from netcortex.logs import RejectionLog
from netcortex.metrics import Registry

__all__ = ["AUTH_RESPONSES", "SOURCE", "bearer_auth"]

log = structlog.get_logger(__name__)

#: ``source`` label of the API's refusals in ``netcortex_rejected_total``.
SOURCE: Final = "http.api"
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
#: Remembered (peer, reason) pairs for log rate limiting, at most.
_MAX_LOG_KEYS: Final = 4096

#: The refusals every authenticated route documents (``responses=`` of a route).
AUTH_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {
        "model": Error,
        "description": "missing or wrong bearer token",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    },
    403: {"model": Error, "description": "http.api_token is not configured (fail closed)"},
}

#: Declares the scheme in the OpenAPI document; the check below decides.
_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="``Authorization: Bearer <http.api_token>``",
)


def bearer_auth(
    config: HttpConfig,
    metrics: Registry,
    *,
    log_interval: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    query_param: str | None = None,
) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that lets a request through only with the right token.

    Args:
        config: the ``http`` section (``api_token``).
        metrics: where refusals are counted.
        log_interval: seconds between two ``api_auth_rejected`` lines per (peer, reason).
        clock: monotonic seconds (tests pass a fake).
        query_param: also take the token from this query parameter when the
            header is absent (the stream route's ``access_token``); ``None``: header only.

    Returns:
        ``async def(request, credentials) -> None`` raising ``HTTPException`` 401/403.
    """
    expected = (
        config.api_token.get_secret_value().encode() if config.api_token is not None else None
    )
    rejected = metrics.counter(
        "netcortex_rejected_total", "inputs rejected by a receiver", ["source", "reason"]
    )
    rejections = RejectionLog(
        log,
        "api_auth_rejected",
        who_field="peer",
        interval=log_interval,
        new_pairs=None,
        max_keys=_MAX_LOG_KEYS,
        clock=clock,
    )

    def refuse(request: Request, reason: str, status: int, detail: str) -> HTTPException:
        rejected.inc(source=SOURCE, reason=reason)
        peer = request.client.host if request.client else "unknown"
        rejections.reject(peer, reason, method=request.method, path=request.url.path)
        return HTTPException(status, detail, headers=_CHALLENGE if status == 401 else None)

    async def require_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)],
    ) -> None:
        if expected is None:
            raise refuse(request, "no_token_configured", 403, "http.api_token is not configured")
        given = None if credentials is None else credentials.credentials
        if given is None and query_param is not None:
            given = request.query_params.get(query_param) or None
        if given is None:
            raise refuse(request, "missing_token", 401, "missing bearer token")
        if not hmac.compare_digest(given.encode(), expected):
            raise refuse(request, "bad_token", 401, "invalid bearer token")

    return require_token
