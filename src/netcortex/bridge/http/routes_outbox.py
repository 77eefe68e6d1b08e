"""Bridge, HTTP: ``GET /api/v1/outbox`` and ``POST /api/v1/outbox/retry-dead`` (issue 7).

The NetBox journal outbox as ``netcortex outbox`` shows it (the same shapes,
``bridge.views.outbox_dict`` / ``job_dict``): jobs by state and the oldest
pending job's age; ``?state=pending|delivered|dead&limit=N`` adds up to ``N`` jobs
of that state, oldest first. ``retry-dead`` requeues dead jobs (every one, or
the body's ``job_ids``) as pending and due now; the running delivery worker is
woken at once.

When ``journal.enabled`` is false the engine has no outbox: both routes answer
``404 {"detail": "the NetBox journal is disabled ..."}`` (the routes exist either
way, so the OpenAPI document does not depend on the config). A store that
fails is 503 (``StoreError``, mapped in ``app.py``).

May import: ``bridge`` (views, http siblings), ``contracts``, FastAPI.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the parameter
# annotations at run time, and ``limit``'s bounds come from the config in a closure.
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.models import (
    Error,
    JobStateName,
    OutboxState,
    Problems,
    RetryDeadIn,
    RetryDeadOut,
    responses,
)
from netcortex.bridge.views import job_dict, outbox_dict
from netcortex.contracts.outbox import JobState, Outbox

__all__ = ["outbox_router"]

_COMMON: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": Error, "description": "the NetBox journal is disabled (journal.enabled)"},
    503: {"model": Error, "description": "the outbox's store cannot be read or written"},
}


def outbox_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """The outbox routes (bearer auth) on the engine's outbox (``ctx.outbox``)."""
    http = ctx.config.http
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["outbox"])
    disabled = (
        f"the NetBox journal is disabled (journal.enabled is false in {ctx.config.source}); "
        "there is no outbox"
    )

    def outbox() -> Outbox:
        if ctx.outbox is None:
            raise HTTPException(404, disabled)
        return ctx.outbox

    @router.get(
        "/outbox",
        response_model=OutboxState,
        responses=responses(
            {400: {"model": Error, "description": "a bad state or limit"}},
            AUTH_RESPONSES,
            _COMMON,
        ),
        summary="NetBox journal jobs by state, the backlog's age, and one state's jobs",
    )
    async def get_outbox(
        state: Annotated[
            JobStateName | None,
            Query(description="also list the jobs in this state (oldest first)"),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=http.max_page_size, description="jobs listed at most")
        ] = http.page_size,
    ) -> Response:
        box = outbox()
        stats = await box.stats()
        body = outbox_dict(stats, datetime.now(UTC))
        items = [] if state is None else await box.jobs(JobState(state), limit)
        body["state"] = state
        body["items"] = [job_dict(j) for j in items]
        return JSONResponse(body)

    @router.post(
        "/outbox/retry-dead",
        response_model=RetryDeadOut,
        responses=responses(
            {
                400: {"model": Error, "description": "the body is not JSON"},
                413: {"model": Error, "description": "body larger than http.max_body_bytes"},
                422: {"model": Problems, "description": "the body is not a valid request"},
            },
            AUTH_RESPONSES,
            _COMMON,
        ),
        summary="Requeue dead NetBox journal jobs (all, or the given job ids)",
    )
    async def retry_dead(body: Annotated[RetryDeadIn | None, Body()] = None) -> Response:
        box = outbox()
        ids = None if body is None or body.job_ids is None else list(dict.fromkeys(body.job_ids))
        requeued = await box.retry_dead(ids)
        if requeued and ctx.wake_journal is not None:
            ctx.wake_journal()
        return JSONResponse({"requeued": requeued})

    return router
