"""Bridge, HTTP: ``GET /api/v1/incidents`` (filters + cursor pages) and ``/incidents/{id}``.

Incidents are outcomes correlated by the association rules (issue 8), as
``netcortex incidents`` shows them (the same filters and shape:
``bridge.views.incident_query`` / ``incident_dict``): ``state`` (``open`` or
``resolved``), ``rule``, ``site``, ``device`` (among the members or the root) and
``since`` (changed at or after: ``10m``, ``2h``, ``1d`` ago, ``now`` or ISO 8601).
Pages are newest change first (``updated_at``, then ``id``, descending — a total
order); ``next_cursor`` continues after the page's last incident and is ``null``
on the last page (one extra row is fetched to know).

When the engine does not correlate it has no incident store: both routes answer
``404 {"detail": "incidents are not available ..."}`` (the routes exist either
way, so the OpenAPI document does not depend on the config). A bad value is
``400 {"detail": "<param>: <why>"}``; a store that fails is 503.

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
from netcortex.bridge.http.cursor import decode_incident_cursor, encode_incident_cursor
from netcortex.bridge.http.models import (
    Error,
    Incident,
    IncidentPage,
    IncidentStateName,
    responses,
)
from netcortex.bridge.views import UsageError, incident_dict, incident_query
from netcortex.contracts.incidents import IncidentCursor, IncidentStore

__all__ = ["incidents_router"]

_COMMON: Final[dict[int | str, dict[str, Any]]] = {
    503: {"model": Error, "description": "the incident store cannot be read"},
}


def incidents_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``GET /api/v1/incidents`` and ``GET /api/v1/incidents/{incident_id}`` (bearer auth)."""
    http = ctx.config.http
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["incidents"])
    unavailable = (
        "incidents are not available: this engine does not correlate outcomes into "
        f"incidents (see the association section of {ctx.config.source})"
    )

    def store() -> IncidentStore:
        if ctx.incidents is None:
            raise HTTPException(404, unavailable)
        return ctx.incidents

    @router.get(
        "/incidents",
        response_model=IncidentPage,
        responses=responses(
            {
                400: {"model": Error, "description": "a bad filter value or cursor"},
                404: {"model": Error, "description": "the engine does not correlate"},
            },
            AUTH_RESPONSES,
            _COMMON,
        ),
        summary="Incidents (correlated outcomes), newest change first, one page at a time",
    )
    async def list_incidents(
        state: Annotated[IncidentStateName | None, Query(description="open or resolved")] = None,
        rule: Annotated[
            str | None,
            Query(description="cable_pair, device_root, bgp_over_link, site_outage or flapping"),
        ] = None,
        site: Annotated[str | None, Query(description="site slug")] = None,
        device: Annotated[
            str | None, Query(description="device name, among the members or the root")
        ] = None,
        since: Annotated[
            str | None,
            Query(description="changed at or after: 30s, 10m, 2h, 1d, 1w ago, now, or ISO 8601"),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=http.max_page_size, description="incidents per page")
        ] = http.page_size,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> Response:
        incidents = store()
        before: IncidentCursor | None = None
        if cursor is not None:
            try:
                before = decode_incident_cursor(cursor)
            except ValueError as exc:
                raise HTTPException(400, f"cursor: {exc}") from None
        try:
            query = incident_query(
                state=state,
                rule=rule,
                site=site,
                device=device,
                since=since,
                # One more than asked: whether it comes back says if a next page exists.
                limit=limit + 1,
                before=before,
            )
        except UsageError as exc:
            raise HTTPException(400, f"{exc.param}: {exc}") from None
        found = await incidents.query(query)
        page = found[:limit]
        next_cursor = (
            encode_incident_cursor(IncidentCursor(page[-1].updated_at, page[-1].incident_id))
            if len(found) > limit
            else None
        )
        return JSONResponse({"items": [incident_dict(i) for i in page], "next_cursor": next_cursor})

    @router.get(
        "/incidents/{incident_id}",
        response_model=Incident,
        responses=responses(
            {404: {"model": Error, "description": "no such incident, or no correlation"}},
            AUTH_RESPONSES,
            _COMMON,
        ),
        summary="One incident by id, with its members and evidence",
    )
    async def get_incident(incident_id: str) -> Response:
        incident = await store().get(incident_id)
        if incident is None:
            raise HTTPException(404, "no incident with that id")
        return JSONResponse(incident_dict(incident))

    return router
