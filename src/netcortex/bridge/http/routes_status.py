"""Bridge, HTTP: ``GET /api/v1/status`` — the engine at a glance (the status page's header).

One JSON object: version, start time and uptime; per source the received and
rejected totals (rejections by reason) with their rates over the last 60 s;
outcomes (total, per second); open incidents (``null`` when the engine does not
correlate); the NetBox journal outbox (``null`` when the journal is off); the
inventory (backend, devices, snapshot age); maintenance windows active now and
the next one to start. Rates come from ``status.StatusSampler`` over the
engine's own counters, not from Prometheus.

May import: ``bridge`` (views, http siblings), ``contracts``, FastAPI.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
import asyncio
import math
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from netcortex import __version__
from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import Error, responses
from netcortex.bridge.http.status import StatusSampler
from netcortex.bridge.views import covers, window_dict
from netcortex.contracts.memory import MaintenanceCalendar, MaintenanceWindow

__all__ = ["status_router"]

#: Boundaries of the calendar walked to find the next window to start.
_MAX_BOUNDARIES: Final = 64


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceRates(_Model):
    """One input source: totals and 60 s rates."""

    source: str
    received: int
    rejected: int
    rejected_by_reason: dict[str, int]
    received_per_s: float
    rejected_per_s: float


class OutcomeRates(_Model):
    """Outcomes produced: total and per second (60 s)."""

    total: int
    per_s: float


class OpenIncidents(_Model):
    """Incidents open now."""

    open: int


class OutboxCounts(_Model):
    """The NetBox journal outbox's jobs by state."""

    pending: int
    delivered: int
    dead: int
    superseded: int
    oldest_pending_age_s: float | None


class InventoryState(_Model):
    """The inventory: backend, devices known, snapshot age (seconds)."""

    backend: str
    devices: int | None
    age_s: float | None


class StatusWindow(_Model):
    """A maintenance window as ``GET /api/v1/maintenance`` lists it."""

    id: str
    scope: str
    target: str
    start: str
    end: str
    rrule: str | None
    timezone: str
    reason: str
    source: str
    active: bool


class MaintenanceNow(_Model):
    """Windows active now, and the next one to start (or ``null``)."""

    active: list[StatusWindow]
    next: StatusWindow | None


class Status(_Model):
    """``GET /api/v1/status``."""

    version: str
    started_at: str | None
    uptime_s: float
    sources: list[SourceRates]
    outcomes: OutcomeRates
    incidents: OpenIncidents | None
    outbox: OutboxCounts | None
    inventory: InventoryState
    maintenance: MaintenanceNow


def _maintenance(
    calendar: MaintenanceCalendar, config_ids: Collection[str], now: datetime
) -> dict[str, Any]:
    """Active windows now and the next to start (walking the calendar's boundaries)."""
    windows: Sequence[MaintenanceWindow] = calendar.windows()

    def row(window: MaintenanceWindow, active: bool) -> dict[str, Any]:
        return window_dict(window, "config" if window.id in config_ids else "store", active)

    active_now = {w.id for w in windows if covers(w, now)}
    upcoming: dict[str, Any] | None = None
    at = now
    for _ in range(_MAX_BOUNDARIES):
        boundary = calendar.next_change(at)
        if boundary is None:
            break
        probe = boundary + timedelta(microseconds=1)
        starting = [w for w in windows if w.id not in active_now and covers(w, probe)]
        if starting:
            upcoming = row(starting[0], False)
            break
        at = boundary
    return {
        "active": [row(w, True) for w in windows if w.id in active_now],
        "next": upcoming,
    }


def expected_sources(ctx: ApiContext) -> list[str]:
    """The intake sources this engine runs (listed even before their first event)."""
    config = ctx.config
    return [
        label
        for label, enabled in (
            ("snmp.trap", config.trap.enabled),
            ("snmp.poll", config.poll.enabled),
            ("meraki.webhook", config.meraki.enabled and ctx.webhook is not None),
        )
        if enabled
    ]


def status_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``GET /api/v1/status`` (bearer auth)."""
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["status"])
    sampler = ctx.sampler if ctx.sampler is not None else StatusSampler(ctx.metrics)
    expected = expected_sources(ctx)

    @router.get(
        "/status",
        response_model=Status,
        responses=responses(
            AUTH_RESPONSES,
            {503: {"model": Error, "description": "a store cannot be read"}},
        ),
        summary="The engine at a glance: intake and rejection rates, outcomes, incidents, "
        "outbox, inventory, maintenance",
    )
    async def get_status() -> Response:
        now = datetime.now(UTC)
        outcomes_total, outcomes_rate = sampler.outcomes()
        incidents: dict[str, int] | None = None
        if ctx.incidents is not None:
            incidents = {"open": len(await ctx.incidents.open_incidents())}
        outbox: dict[str, Any] | None = None
        if ctx.outbox is not None:
            stats = await ctx.outbox.stats()
            oldest = stats.oldest_pending_at
            outbox = {
                "pending": stats.pending,
                "delivered": stats.delivered,
                "dead": stats.dead,
                "superseded": stats.superseded,
                "oldest_pending_age_s": (
                    None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3)
                ),
            }
        memory = ctx.memory
        age = None if memory is None else memory.snapshot_age()
        inventory = {
            "backend": ctx.config.inventory.backend if memory is not None else "none",
            "devices": None if memory is None else len(memory.devices()),
            "age_s": None if age is None or not math.isfinite(age) else round(age, 3),
        }
        maintenance = await asyncio.to_thread(
            _maintenance, ctx.calendar, ctx.config_window_ids, now
        )
        body = {
            "version": __version__,
            "started_at": None if sampler.started_at is None else sampler.started_at.isoformat(),
            "uptime_s": round(sampler.uptime_s, 3),
            "sources": [
                {
                    "source": s.source,
                    "received": s.received,
                    "rejected": s.rejected,
                    "rejected_by_reason": s.rejected_by_reason,
                    "received_per_s": s.received_per_s,
                    "rejected_per_s": s.rejected_per_s,
                }
                for s in sampler.sources(expected)
            ],
            "outcomes": {"total": outcomes_total, "per_s": outcomes_rate},
            "incidents": incidents,
            "outbox": outbox,
            "inventory": inventory,
            "maintenance": maintenance,
        }
        return JSONResponse(body)

    return router
