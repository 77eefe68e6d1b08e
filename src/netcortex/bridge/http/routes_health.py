"""Bridge, HTTP: ``/healthz`` (alive), ``/readyz`` (can take work), ``/metrics`` (Prometheus).

Health and readiness need no token (load balancers and orchestrators probe
them); metrics do. Each is served under ``/api/v1`` (in the OpenAPI document)
and at the root (``/healthz``, ``/readyz``, ``/metrics``: the paths probes and
scrapers expect by default; not in the document).

Readiness is ``200 ready`` when every check passes, else ``503 not_ready``:

* ``engine``: the engine finished starting (and is not stopping);
* ``bus``: ``EventBus.connected``;
* ``store``: ``await OutcomeStore.ping()`` (open and writable), bounded by
  ``store_timeout``;
* ``inventory``: a snapshot is loaded (``snapshot_age()`` finite), or no
  inventory is configured.

The endpoint is public, so a failed check's ``detail`` names the kind of
failure only; the full error (a store's message names its file) goes to the
log, once per change of the overall status (``readiness_changed``), so a probe
every few seconds does not repeat it.

May import: ``bridge.http`` siblings, ``contracts``, ``errors``, FastAPI.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import Health, Readiness
from netcortex.errors import NetcortexError

__all__ = ["health_router", "readiness"]

log = structlog.get_logger(__name__)

#: The Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_HEALTHY: Final = b'{"status":"ok"}'
#: Longest readiness waits for the store's ping (seconds).
_STORE_TIMEOUT: Final = 2.0
#: Longest text of a failed check's ``detail``.
_MAX_DETAIL: Final = 300


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail[:_MAX_DETAIL]}


async def readiness(
    ctx: ApiContext, *, store_timeout: float = _STORE_TIMEOUT
) -> tuple[dict[str, Any], dict[str, str]]:
    """The readiness body (``status`` and every check, see the module docstring) and
    the full error of each failed check that has one (for the log, not the body)."""
    errors: dict[str, str] = {}
    engine = _check(True, "started") if ctx.ready() else _check(False, "not started or stopping")
    bus = _check(True, "connected") if ctx.bus.connected else _check(False, "not connected")
    try:
        async with asyncio.timeout(store_timeout):
            await ctx.store.ping()
    except TimeoutError:
        store = _check(False, f"no answer within {store_timeout:g} s")
    except NetcortexError as exc:
        store = _check(False, f"not writable ({type(exc).__name__}, see the log)")
        errors["store"] = str(exc)
    else:
        store = _check(True, "writable")
    if ctx.memory is None:
        inventory = {**_check(True, "no inventory configured"), "age_seconds": None}
    else:
        age = ctx.memory.snapshot_age()
        if math.isfinite(age):
            inventory = {**_check(True, "loaded"), "age_seconds": round(age, 3)}
        else:
            inventory = {**_check(False, "no snapshot loaded yet"), "age_seconds": None}
    checks = {"engine": engine, "bus": bus, "store": store, "inventory": inventory}
    ready = all(c["ok"] for c in checks.values())
    return {"status": "ready" if ready else "not_ready", "checks": checks}, errors


def health_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """Routes ``healthz``, ``readyz`` and ``metrics``, under ``/api/v1`` and the root."""
    router = APIRouter()

    async def healthz() -> Response:
        return Response(_HEALTHY, media_type="application/json")

    last_status = ["ready"]  # the engine only serves HTTP once it has started

    async def readyz() -> Response:
        body, errors = await readiness(ctx)
        status = body["status"]
        if status != last_status[0]:
            last_status[0] = status
            failed = {k: c["detail"] for k, c in body["checks"].items() if not c["ok"]}
            (log.info if status == "ready" else log.warning)(
                "readiness_changed", status=status, failed=failed, errors=errors
            )
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    for prefix, in_schema in (("/api/v1", True), ("", False)):
        router.add_api_route(
            f"{prefix}/healthz",
            healthz,
            methods=["GET"],
            response_model=Health,
            include_in_schema=in_schema,
            summary="Liveness: the process serves HTTP",
            tags=["health"],
        )
        router.add_api_route(
            f"{prefix}/readyz",
            readyz,
            methods=["GET"],
            response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a check failed"}},
            include_in_schema=in_schema,
            summary="Readiness: engine started, bus connected, store writable, inventory loaded",
            tags=["health"],
        )
        router.add_api_route(
            f"{prefix}/metrics",
            metrics,
            methods=["GET"],
            dependencies=[Depends(auth)],
            response_class=Response,
            responses={
                200: {
                    "description": "Prometheus text exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **AUTH_RESPONSES,
            },
            include_in_schema=in_schema,
            summary="Prometheus metrics",
            tags=["health"],
        )
    return router
