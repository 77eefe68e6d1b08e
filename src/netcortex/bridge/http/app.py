"""Bridge, HTTP: ``create_app(ctx)`` — the FastAPI app served inside ``netcortex run``.

Routes (``/api/v1/*`` need ``Authorization: Bearer <http.api_token>`` except
health and the OpenAPI document):

==========================================  ===================================
``POST /webhooks/meraki``                   Meraki alerts (``routes_webhook``)
``GET  /api/v1/healthz``, ``/readyz``       liveness, readiness (``routes_health``)
``GET  /api/v1/metrics``                    Prometheus text (``routes_health``)
``GET  /api/v1/outcomes[/{id}]``            outcomes (``routes_outcomes``)
``GET|POST /api/v1/maintenance``,
``DELETE /api/v1/maintenance/{id}``         windows (``routes_maintenance``)
``GET  /api/v1/incidents[/{id}]``           incidents (``routes_incidents``)
``GET  /api/v1/outbox``,
``POST /api/v1/outbox/retry-dead``          NetBox journal outbox (``routes_outbox``)
``GET  /api/v1/stream``                     live outcomes + incidents, SSE (``routes_stream``;
                                            also ``?access_token=``)
``GET  /api/v1/status``                     intake/rejection rates, outbox, inventory,
                                            maintenance (``routes_status``)
``GET  /api/v1/accounting``                 where every input went, per source
                                            (``routes_accounting``)
``GET  /api/v1/openapi.json``, ``/docs``    the API description
``GET  /``, ``/static/{name}``              the status page, no auth (``routes_page``)
==========================================  ===================================

Errors are JSON ``{"detail": ...}`` everywhere: a bad query or path value is
400 ``"<param>: <why>"``; an invalid JSON body is 400 and a body that is not a
valid model is 422 ``{"detail", "problems": [{"field", "message"}]}``; a body
over ``http.max_body_bytes`` is 413 (``BodyCapMiddleware``); a store
that fails is 503; anything unexpected is 500 ``"internal error"`` (logged once
with its traceback by ``ObservabilityMiddleware``, the server keeps serving).

The OpenAPI document is made truthful (schemathesis checks answers against it):
FastAPI's automatic ``422 HTTPValidationError`` on routes with parameters is
removed (those answer 400, declared per route), and the webhook's request body
is the receiver's ``MerakiAlert`` schema.

May import: ``bridge`` (views, http siblings), ``contracts``, ``errors``,
``sensory.webhook.schema`` (for the document), FastAPI. Never ``netcortex.app``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from netcortex import __version__
from netcortex.bridge.http.auth import bearer_auth
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.middleware import BodyCapMiddleware, ObservabilityMiddleware
from netcortex.bridge.http.routes_accounting import accounting_router
from netcortex.bridge.http.routes_health import health_router
from netcortex.bridge.http.routes_incidents import incidents_router
from netcortex.bridge.http.routes_maintenance import maintenance_router
from netcortex.bridge.http.routes_outbox import outbox_router
from netcortex.bridge.http.routes_outcomes import outcomes_router
from netcortex.bridge.http.routes_page import page_router
from netcortex.bridge.http.routes_status import status_router
from netcortex.bridge.http.routes_stream import stream_router
from netcortex.bridge.http.routes_webhook import MERAKI_ALERT_REF, WEBHOOK_PATH, webhook_router
from netcortex.errors import StoreError
from netcortex.sensory.webhook.schema import MerakiAlert

__all__ = ["OPENAPI_PATH", "create_app"]

OPENAPI_PATH: Final = "/api/v1/openapi.json"
_REF: Final = "#/components/schemas/"
_DESCRIPTION: Final = (
    "The netcortex engine's HTTP API: reflex outcomes with their decision traces, "
    "incidents (correlated outcomes), "
    "maintenance windows, the NetBox journal outbox, health, readiness and metrics; "
    "and the Meraki Dashboard "
    "webhook receiver. Everything under /api/v1 except healthz, readyz and this "
    "document needs `Authorization: Bearer <http.api_token>`."
)


def _param_problem(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "header")]
    where = ".".join(loc) or "request"
    return f"{where}: {error.get('msg', 'invalid value')}"


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """Query/path problems → 400 ``"<param>: <why>"``; body problems → 400 (not JSON)
    or 422 with every problem. Never echoes input values."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    body = [e for e in errors if e.get("loc", ("",))[0] == "body"]
    if not body or len(body) != len(errors):
        first = next(e for e in errors if e not in body)
        return JSONResponse({"detail": _param_problem(first)}, status_code=400)
    if any(e.get("type") == "json_invalid" for e in body):
        return JSONResponse({"detail": "body: invalid JSON"}, status_code=400)
    problems = [
        {
            "field": ".".join(str(p) for p in e["loc"][1:]) or "body",
            "message": str(e.get("msg", "invalid value")),
        }
        for e in body
    ]
    return JSONResponse({"detail": "invalid request body", "problems": problems}, status_code=422)


async def _on_store_error(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)


def _openapi(app: FastAPI, *, webhook: bool) -> dict[str, Any]:
    """The OpenAPI document, made once: no phantom 422s, the webhook body documented."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title="netcortex",
        version=__version__,
        description=_DESCRIPTION,
        routes=app.routes,
    )
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            schema = (
                responses.get("422", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            if schema.get("$ref") == _REF + "HTTPValidationError":
                del responses["422"]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    if webhook:
        # The route's requestBody refers to it (openapi_extra); FastAPI cannot know it.
        alert = MerakiAlert.model_json_schema(by_alias=True, ref_template=_REF + "{model}")
        schemas.update(alert.pop("$defs", {}))
        schemas[MERAKI_ALERT_REF.removeprefix(_REF)] = alert
    app.openapi_schema = doc
    return doc


def create_app(ctx: ApiContext) -> FastAPI:
    """The ASGI app over ``ctx`` (see the module docstring for the routes)."""
    app = FastAPI(
        title="netcortex",
        version=__version__,
        openapi_url=OPENAPI_PATH,
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    auth = bearer_auth(ctx.config.http, ctx.metrics)
    if ctx.webhook is not None:
        app.include_router(webhook_router(ctx, ctx.webhook))
    app.include_router(health_router(ctx, auth))
    app.include_router(outcomes_router(ctx, auth))
    app.include_router(incidents_router(ctx, auth))
    app.include_router(maintenance_router(ctx, auth))
    app.include_router(outbox_router(ctx, auth))
    app.include_router(status_router(ctx, auth))
    app.include_router(accounting_router(ctx, auth))
    # The stream also takes ?access_token= (EventSource cannot send headers).
    app.include_router(
        stream_router(ctx, bearer_auth(ctx.config.http, ctx.metrics, query_param="access_token"))
    )
    app.include_router(page_router())
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StoreError, _on_store_error)
    webhook = ctx.webhook is not None
    app.openapi = lambda: _openapi(app, webhook=webhook)  # type: ignore[method-assign]
    fixed = frozenset(
        path for route in app.routes if "{" not in (path := getattr(route, "path", "{"))
    )
    # Added last = outermost: the histogram and the 500 guard see every answer,
    # the cap's 413s included.
    app.add_middleware(
        BodyCapMiddleware,
        max_bytes=ctx.config.http.max_body_bytes,
        exempt=frozenset({WEBHOOK_PATH}),
    )
    app.add_middleware(ObservabilityMiddleware, metrics=ctx.metrics, fixed_paths=fixed)
    return app
