"""Bridge, HTTP: ``POST /webhooks/meraki`` — the HTTP side of the Meraki receiver.

The route is thin on purpose (the hot path: thousands of alerts a second): a
plain ``Request``, no dependency injection, no body model. It reads the body
from the ASGI stream under the ``http.max_body_bytes`` cap — a
``Content-Length`` over the cap is refused before reading a byte, a stream that
crosses the cap (chunked, no length) stops being read there (the server
drops a bounded amount of the unread rest, then closes: ``server.py``) — and
hands the bytes, three headers and the peer address to
``MerakiWebhookReceiver.ingest``, whose ``WebhookResponse`` it sends as is. The
receiver authenticates (shared secret in the body or a bearer header), so no
API token applies here. With ``meraki.enabled: false`` the route does not
exist (404).

The request body is documented as the receiver's ``MerakiAlert`` model
(``openapi_extra``; ``app._openapi`` adds the schema itself), and every status
the receiver answers is listed.

May import: ``bridge.http`` siblings, ``sensory.webhook``, Starlette/FastAPI.
"""

from __future__ import annotations

import time
from typing import Any, Final

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import WebhookAccepted, WebhookDuplicate, WebhookRejected
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver, WebhookResponse

__all__ = ["MERAKI_ALERT_REF", "WEBHOOK_PATH", "webhook_router"]

log = structlog.get_logger(__name__)

WEBHOOK_PATH: Final = "/webhooks/meraki"
#: Where ``app._openapi`` puts the ``MerakiAlert`` schema.
MERAKI_ALERT_REF: Final = "#/components/schemas/MerakiAlert"

_REJECTED: Final = {"model": WebhookRejected}
#: Every status ``MerakiWebhookReceiver`` answers, with its meaning.
WEBHOOK_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": WebhookDuplicate, "description": "already accepted (same alertId)"},
    400: {**_REJECTED, "description": "malformed (not JSON) or stale (sentAt outside the window)"},
    401: {**_REJECTED, "description": "wrong or missing sharedSecret / bearer token"},
    403: {**_REJECTED, "description": "meraki.shared_secret is not configured (fail closed)"},
    413: {
        **_REJECTED,
        "description": "body larger than http.max_body_bytes, or its event larger than the bus "
        "carries (max_event_bytes, under NATS' 1 MiB max_payload)",
    },
    415: {**_REJECTED, "description": "Content-Type is not JSON"},
    422: {**_REJECTED, "description": "JSON that is not a valid Meraki alert"},
    500: {**_REJECTED, "description": "a bug in the receiver (logged); Meraki retries"},
    503: {
        **_REJECTED,
        "description": "overloaded or shutting down; retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    },
}


def _send(answer: WebhookResponse) -> Response:
    return JSONResponse(dict(answer.body), status_code=answer.status, headers=dict(answer.headers))


def webhook_router(ctx: ApiContext, receiver: MerakiWebhookReceiver) -> APIRouter:
    """``POST /webhooks/meraki`` feeding ``receiver`` (see the module docstring)."""
    router = APIRouter(tags=["webhooks"])
    cap = ctx.config.http.max_body_bytes

    @router.post(
        WEBHOOK_PATH,
        status_code=202,
        response_model=WebhookAccepted,
        responses=WEBHOOK_RESPONSES,
        summary="Receive one Meraki Dashboard webhook alert",
        description=(
            "Authenticated by the body's `sharedSecret` (Dashboard's shared secret) or "
            "`Authorization: Bearer <meraki.shared_secret>`; no API token. Answers 202 "
            "as soon as the alert is queued for publishing."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "a Meraki Dashboard alert (the default 'Meraki' payload template)",
                "content": {"application/json": {"schema": {"$ref": MERAKI_ALERT_REF}}},
            }
        },
    )
    async def meraki_webhook(request: Request) -> Response:
        received_at = time.time()
        client = request.client
        peer = client.host if client is not None else None
        headers = request.headers
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            return _send(receiver.too_large(peer=peer, size=int(declared)))
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    # Stop reading here; uvicorn discards whatever else arrives.
                    return _send(receiver.too_large(peer=peer, size=None))
                chunks.append(chunk)
        except ClientDisconnect:
            log.debug("webhook_client_disconnected", peer=peer)
            return Response(status_code=400)
        answer = receiver.ingest(
            chunks[0] if len(chunks) == 1 else b"".join(chunks),
            content_type=headers.get("content-type"),
            authorization=headers.get("authorization"),
            peer=peer,
            received_at=received_at,
        )
        return _send(answer)

    return router
