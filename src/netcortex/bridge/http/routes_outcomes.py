"""Bridge, HTTP: ``GET /api/v1/outcomes`` (filters + cursor pages) and ``/outcomes/{id}``.

The filters are ``netcortex outcomes``'s, parsed by the same code
(``bridge.views.outcome_query``): ``since``/``until`` (``10m``, ``2h``, ``1d``
ago, ``now`` or ISO 8601), ``severity`` and ``kind`` (repeatable and/or comma
lists), ``handler``, ``device``, ``site``. Pages are newest first
(``recorded_at``, then ``outcome_id``, descending — a total order, so paging
never skips or repeats an outcome); ``next_cursor`` continues after the page's
last outcome and is ``null`` on the last page (one extra row is fetched to know).

A bad value is ``400 {"detail": "<param>: <why>"}``.

May import: ``bridge`` (views, http siblings), ``contracts``, FastAPI.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the parameter
# annotations at run time, and ``limit``'s bounds come from the config in a closure.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.cursor import decode_cursor, encode_cursor
from netcortex.bridge.http.models import Error, Outcome, OutcomePage, responses
from netcortex.bridge.views import UsageError, outcome_query
from netcortex.contracts.codec import outcome_to_dict
from netcortex.contracts.memory import OutcomeCursor

__all__ = ["outcomes_router"]

_STORE_DOWN: Final[dict[int | str, dict[str, Any]]] = {
    503: {"model": Error, "description": "the outcome store cannot be read"}
}


def outcomes_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``GET /api/v1/outcomes`` and ``GET /api/v1/outcomes/{outcome_id}`` (bearer auth)."""
    http = ctx.config.http
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["outcomes"])

    @router.get(
        "/outcomes",
        response_model=OutcomePage,
        responses=responses(
            {400: {"model": Error, "description": "a bad filter value"}},
            AUTH_RESPONSES,
            _STORE_DOWN,
        ),
        summary="Stored reflex outcomes, newest first, one page at a time",
    )
    async def list_outcomes(
        since: Annotated[
            str | None,
            Query(description="recorded at or after: 30s, 10m, 2h, 1d, 1w ago, now, or ISO 8601"),
        ] = None,
        until: Annotated[
            str | None, Query(description="recorded before: the same forms as since")
        ] = None,
        severity: Annotated[
            list[str] | None,
            Query(description="info, warn, high, critical; repeatable and/or comma-separated"),
        ] = None,
        kind: Annotated[
            list[str] | None,
            Query(
                description="logged, skipped, suppressed, errored; repeatable and/or "
                "comma-separated"
            ),
        ] = None,
        handler: Annotated[str | None, Query(description="handler id, e.g. link_down")] = None,
        device: Annotated[str | None, Query(description="device name")] = None,
        site: Annotated[str | None, Query(description="site slug")] = None,
        limit: Annotated[
            int, Query(ge=1, le=http.max_page_size, description="outcomes per page")
        ] = http.page_size,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> Response:
        before: OutcomeCursor | None = None
        if cursor is not None:
            try:
                before = decode_cursor(cursor)
            except ValueError as exc:
                raise HTTPException(400, f"cursor: {exc}") from None
        try:
            query = outcome_query(
                since=since,
                until=until,
                handler=handler,
                severity=severity,
                kind=kind,
                device=device,
                site=site,
                # One more than asked: whether it comes back says if a next page exists.
                limit=limit + 1,
                before=before,
            )
        except UsageError as exc:
            raise HTTPException(400, f"{exc.param}: {exc}") from None
        found = await ctx.store.query(query)
        page = found[:limit]
        next_cursor = encode_cursor(OutcomeCursor.after(page[-1])) if len(found) > limit else None
        return JSONResponse(
            {"items": [outcome_to_dict(o) for o in page], "next_cursor": next_cursor}
        )

    @router.get(
        "/outcomes/{outcome_id}",
        response_model=Outcome,
        responses=responses(
            {404: {"model": Error, "description": "no such outcome"}}, AUTH_RESPONSES, _STORE_DOWN
        ),
        summary="One outcome by id, with its decision trace",
    )
    async def get_outcome(outcome_id: str) -> Response:
        outcome = await ctx.store.get(outcome_id)
        if outcome is None:
            raise HTTPException(404, "no outcome with that id")
        return JSONResponse(outcome_to_dict(outcome))

    return router
