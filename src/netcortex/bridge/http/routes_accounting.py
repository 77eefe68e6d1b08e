"""Bridge, HTTP: ``GET /api/v1/accounting`` — where did every input go (``accounting``).

Per source: received, rejected (by reason), duplicates, published, publish
failures, in flight and whether ``received == published + rejected + duplicates
+ in_flight`` holds; engine-wide: handled per handler, outcomes by kind, rows
stored, store failures, kernel UDP drops. All from the engine's own counters.

May import: ``bridge`` (http siblings), FastAPI.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from netcortex.bridge.http.accounting import accounting
from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import responses
from netcortex.bridge.http.routes_status import expected_sources
from netcortex.bridge.http.status import StatusSampler

__all__ = ["accounting_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceAccount(_Model):
    """One intake source's inputs, and where they went."""

    source: str = Field(description="trap, meraki, poll (or a counter's source label)")
    received: int = Field(description="inputs received (poll: successful polls)")
    rejected: int = Field(description="inputs refused at the boundary")
    rejected_by_reason: dict[str, int]
    duplicates: int = Field(description="inputs answered as already accepted (webhook)")
    published: int = Field(description="events the bus accepted")
    publish_failed: int = Field(description="accepted events the bus never took (lost)")
    in_flight: int = Field(description="accepted events queued in the receiver, not yet published")
    balanced: bool | None = Field(
        description="received == published + rejected + duplicates + in_flight; "
        "null where received does not count events (poll)"
    )


class HandledAccount(_Model):
    """What the reflex runner took off the bus."""

    total: int
    by_handler: dict[str, int] = Field(
        description="bus messages each handler took and decoded (at most one outcome each)"
    )
    rejected: int = Field(description="bus messages that were not a valid event")
    rejected_by_reason: dict[str, int]


class OutcomeAccount(_Model):
    """Outcomes produced, by kind."""

    total: int
    by_kind: dict[str, int]


class StoredAccount(_Model):
    """Outcome rows written to the store."""

    rows: int = Field(description="rows written")
    duplicates: int = Field(description="rows ignored: that outcome was already stored")


class Accounting(_Model):
    """``GET /api/v1/accounting``."""

    sources: list[SourceAccount]
    handled: HandledAccount
    outcomes: OutcomeAccount
    stored: StoredAccount
    store_failures: int = Field(description="store batches that failed to commit")
    kernel_udp_drops: dict[str, int] = Field(
        description="datagrams the kernel dropped per UDP listener (receive buffer full); "
        "empty where not readable"
    )


def accounting_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``GET /api/v1/accounting`` (bearer auth)."""
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["status"])
    sampler = ctx.sampler if ctx.sampler is not None else StatusSampler(ctx.metrics)
    expected = expected_sources(ctx)

    @router.get(
        "/accounting",
        response_model=Accounting,
        responses=responses(AUTH_RESPONSES),
        summary="Where every input went: per source received, rejected, published, in flight "
        "and whether they balance; handled, outcomes, stored, kernel UDP drops",
    )
    async def get_accounting() -> Response:
        return JSONResponse(accounting(ctx.metrics, sampler, expected))

    return router
