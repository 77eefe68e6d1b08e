"""Bridge, HTTP: ``create_intake_app`` — the HTTP server of a ``receiver`` process.

A receiver (``engine.role: receiver``, ``netcortex.roles``) keeps no outcomes,
so it serves only what intake needs:

==========================================  ===================================
``POST /webhooks/meraki``                   Meraki alerts → JetStream (``routes_webhook``;
                                            404 with ``meraki.enabled: false``)
``GET  /healthz``, ``/readyz``              liveness, readiness (also under ``/api/v1``)
``GET  /metrics``                           Prometheus text, bearer token (also under ``/api/v1``)
``GET  /api/v1/accounting``                 where every input went (``routes_accounting``):
                                            the receiver's half of the fleet's accounting
==========================================  ===================================

Every other path (outcomes, incidents, the stream ...) is 404: those live on
the workers. Readiness checks only what a receiver runs: ``engine`` (started,
not stopping), ``bus`` (connected to NATS) and ``inventory`` (a snapshot is
loaded, or none is configured) — there is no store to ping.

May import: ``bridge.http`` siblings, ``config``, ``contracts``, ``metrics``,
``sensory.webhook.receiver``, FastAPI. Never ``netcortex.app``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, cast

import structlog
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.responses import JSONResponse

from netcortex import __version__
from netcortex.bridge.http.auth import bearer_auth
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.middleware import BodyCapMiddleware, ObservabilityMiddleware
from netcortex.bridge.http.routes_accounting import accounting_router
from netcortex.bridge.http.routes_health import METRICS_CONTENT_TYPE
from netcortex.bridge.http.routes_webhook import WEBHOOK_PATH, webhook_router
from netcortex.config import Config
from netcortex.contracts.bus import EventBus
from netcortex.contracts.memory import MaintenanceCalendar, OutcomeStore, SemanticMemory
from netcortex.metrics import Registry
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver

__all__ = ["create_intake_app", "intake_readiness"]

log = structlog.get_logger(__name__)

_HEALTHY: Final = b'{"status":"ok"}'


def intake_readiness(
    *, ready: bool, bus: EventBus, memory: SemanticMemory | None
) -> dict[str, Any]:
    """The receiver's readiness body: ``status`` and the ``engine``, ``bus`` and
    ``inventory`` checks (all must pass for ``ready``)."""
    engine = {"ok": ready, "detail": "started" if ready else "not started or stopping"}
    connected = bus.connected
    bus_check = {"ok": connected, "detail": "connected" if connected else "not connected"}
    inventory: dict[str, Any]
    if memory is None:
        inventory = {"ok": True, "detail": "no inventory configured", "age_seconds": None}
    else:
        age = memory.snapshot_age()
        inventory = (
            {"ok": True, "detail": "loaded", "age_seconds": round(age, 3)}
            if math.isfinite(age)
            else {"ok": False, "detail": "no snapshot loaded yet", "age_seconds": None}
        )
    checks = {"engine": engine, "bus": bus_check, "inventory": inventory}
    status = "ready" if all(c["ok"] for c in checks.values()) else "not_ready"
    return {"status": status, "role": "receiver", "checks": checks}


def create_intake_app(
    *,
    config: Config,
    metrics: Registry,
    bus: EventBus,
    memory: SemanticMemory | None,
    webhook: MerakiWebhookReceiver | None,
    ready: Callable[[], bool],
) -> FastAPI:
    """The receiver's ASGI app (see the module docstring for its routes)."""
    app = FastAPI(
        title="netcortex receiver",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    # The webhook and accounting routers read only ctx.config, ctx.metrics and
    # ctx.webhook; a receiver has no store or calendar, and no route of this app
    # reaches for them.
    ctx = ApiContext(
        config=config,
        metrics=metrics,
        store=cast(OutcomeStore, None),
        calendar=cast(MaintenanceCalendar, None),
        config_window_ids=frozenset(),
        bus=bus,
        memory=memory,
        webhook=webhook,
        ready=ready,
    )
    if webhook is not None:
        app.include_router(webhook_router(ctx, webhook))
    auth = bearer_auth(config.http, metrics)
    app.include_router(accounting_router(ctx, auth))
    app.include_router(_health_router(metrics, bus, memory, ready, config))
    fixed = frozenset(
        path for route in app.routes if "{" not in (path := getattr(route, "path", "{"))
    )
    app.add_middleware(
        BodyCapMiddleware,
        max_bytes=config.http.max_body_bytes,
        exempt=frozenset({WEBHOOK_PATH}),
    )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, fixed_paths=fixed)
    return app


def _health_router(
    metrics: Registry,
    bus: EventBus,
    memory: SemanticMemory | None,
    ready: Callable[[], bool],
    config: Config,
) -> APIRouter:
    router = APIRouter()
    auth = bearer_auth(config.http, metrics)
    last_status = ["ready"]  # HTTP is served only once the engine has started

    async def healthz() -> Response:
        return Response(_HEALTHY, media_type="application/json")

    async def readyz() -> Response:
        body = intake_readiness(ready=ready(), bus=bus, memory=memory)
        status = body["status"]
        if status != last_status[0]:
            last_status[0] = status
            failed = {k: c["detail"] for k, c in body["checks"].items() if not c["ok"]}
            (log.info if status == "ready" else log.warning)(
                "readiness_changed", status=status, failed=failed
            )
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    async def render_metrics() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    for prefix in ("/api/v1", ""):
        router.add_api_route(f"{prefix}/healthz", healthz, methods=["GET"])
        router.add_api_route(f"{prefix}/readyz", readyz, methods=["GET"])
        router.add_api_route(
            f"{prefix}/metrics", render_metrics, methods=["GET"], dependencies=[Depends(auth)]
        )
    return router
