"""Bridge, HTTP: ``GET/POST /api/v1/maintenance`` and ``DELETE /api/v1/maintenance/{id}``.

The same windows and rules as ``netcortex maintenance list|add|remove``
(``bridge.views``): a POSTed body goes through ``views.build_window`` (which ends
in the calendar's own ``window_problems``), so every problem is reported at once
as ``422 {"detail", "problems": [{"field", "message"}]}``. Windows from the
config file (``maintenance.windows``) are listed with ``"source": "config"`` and
cannot be replaced or deleted here (409). Changes go to the running engine's
calendar, so they apply to the next event at once (and are stored durably for
the CLI and a restart).

Evaluating windows is CPU work that grows with a recurring window's history
(``memory.semantic.maintenance.recurrence_problems`` bounds it for every
new window: config windows at start, and ``add``): building, validating and
listing run on a worker thread, so a slow rule never stalls the event loop that
serves webhooks and reflexes.

May import: ``bridge`` (views, http siblings), ``contracts``, FastAPI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import Error, Problems, Window, WindowIn, WindowList, responses
from netcortex.bridge.views import (
    API_WINDOW_NAMES,
    UsageError,
    WindowProblems,
    build_window,
    covers,
    parse_time,
    window_dict,
    window_rows,
)

__all__ = ["maintenance_router"]

_STORE_DOWN: Final[dict[int | str, dict[str, Any]]] = {
    503: {"model": Error, "description": "the maintenance store cannot be written"}
}


def maintenance_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """The maintenance routes (bearer auth) on the engine's running calendar."""
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["maintenance"])
    calendar = ctx.calendar
    config_ids = ctx.config_window_ids
    source = ctx.config.source

    def config_owned(window_id: str, action: str) -> HTTPException:
        return HTTPException(
            409,
            f"window {window_id!r} comes from the config file {source} "
            f"(maintenance.windows); {action} it there",
        )

    @router.get(
        "/maintenance",
        response_model=WindowList,
        responses=responses(
            {400: {"model": Error, "description": "a bad active_at"}}, AUTH_RESPONSES
        ),
        summary="Every maintenance window (config file and store), ordered by start",
    )
    async def list_windows(
        active_at: Annotated[
            str | None,
            Query(description="evaluate ``active`` at this time: now, 2h (ago) or ISO 8601"),
        ] = None,
    ) -> Response:
        try:
            at = parse_time(active_at) if active_at else datetime.now(UTC)
        except UsageError as exc:
            raise HTTPException(400, f"active_at: {exc}") from None
        rows = await asyncio.to_thread(window_rows, calendar.windows(), config_ids, at)
        return JSONResponse({"items": rows})

    @router.post(
        "/maintenance",
        status_code=201,
        response_model=Window,
        responses=responses(
            {
                200: {"model": Window, "description": "a stored window with this id was replaced"},
                201: {"description": "the window was added"},
                400: {"model": Error, "description": "the body is not JSON"},
                409: {"model": Error, "description": "the id belongs to a config-file window"},
                413: {"model": Error, "description": "body larger than http.max_body_bytes"},
                422: {"model": Problems, "description": "the window is invalid (every problem)"},
            },
            AUTH_RESPONSES,
            _STORE_DOWN,
        ),
        summary="Add a maintenance window, or replace the stored one with the same id",
    )
    async def add_window(body: WindowIn) -> Response:
        if body.id in config_ids:
            raise config_owned(body.id, "change")
        try:
            window = await asyncio.to_thread(
                build_window,
                id=body.id,
                scope=body.scope,
                target=body.target,
                start=body.start,
                end=body.end,
                duration=None if body.duration is None else str(body.duration),
                rrule=body.rrule,
                timezone=body.timezone,
                reason=body.reason,
                names=API_WINDOW_NAMES,
            )
        except WindowProblems as exc:
            return JSONResponse(
                {
                    "detail": "invalid maintenance window",
                    "problems": [{"field": f, "message": m} for f, m in exc.problems],
                },
                status_code=422,
            )
        replaced = any(w.id == window.id for w in calendar.windows())
        await calendar.add(window)  # logs maintenance_window_added
        active = await asyncio.to_thread(covers, window, datetime.now(UTC))
        row = window_dict(window, "store", active)
        return JSONResponse(row, status_code=200 if replaced else 201)

    @router.delete(
        "/maintenance/{window_id}",
        status_code=204,
        response_class=Response,
        responses=responses(
            {
                404: {"model": Error, "description": "no stored window with this id"},
                409: {"model": Error, "description": "the window comes from the config file"},
            },
            AUTH_RESPONSES,
            _STORE_DOWN,
        ),
        summary="Delete a stored maintenance window",
    )
    async def delete_window(window_id: str) -> Response:
        if window_id in config_ids:
            raise config_owned(window_id, "delete")
        if not await calendar.remove(window_id):
            raise HTTPException(404, "no stored maintenance window with that id")
        return Response(status_code=204)

    return router
