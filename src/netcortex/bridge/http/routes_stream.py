"""Bridge, HTTP: ``GET /api/v1/stream`` — live outcomes and incidents as Server-Sent Events.

Auth: the bearer token, or (this route only, for ``EventSource``) ``?access_token=``.
Filters (AND): ``subject`` (repeatable NATS-style patterns over ``reflex.>`` /
``incident.>``), ``severity`` (minimum), ``device``, ``site``. A bad value is
``400 {"detail": "<param>: <why>"}`` before the stream starts; more than
``http.stream_max_clients`` clients is 503.

The stream (``text/event-stream``)::

    retry: 2000                                  once, first
    event: gap      data: {"skipped": N}         resume only, when the backlog was cut
    id: <pos>  event: outcome   data: {"subject", "outcome"}
    id: <pos>  event: incident  data: {"subject", "transition", "incident"}
    event: ready    data: {"resumed": N, "live": true}   after the backlog
    ...live messages, ": keep-alive" comments every http.stream_keepalive_seconds
    event: overflow data: {"detail", "dropped"}  then the server closes the stream

Resume (``Last-Event-ID`` header or ``?last_event_id=``): the client is
registered with the hub first (live messages queue up), then the backlog is
read from the stores — outcomes after the id's outcome position, oldest first,
then the current version of each incident changed after its incident position
(``"transition": "resumed"``), at most ``http.stream_max_backlog`` of each (the
oldest beyond are skipped and counted in ``gap``) — then the queued live
messages are sent, skipping what the backlog already sent (by outcome id, and
incident version) or what lies at or before the resume position. A malformed id
is 400.

Every message's ``id`` is the connection's position after it (``hub.Position``):
the newest outcome and incident sent so far. A new connection starts at "now".

Logs: ``stream_client_connected``, ``stream_client_overflow``,
``stream_client_closed`` (reason ``client_closed``, ``overflow``,
``server_stopping``; ``sent``; ``duration_s``). The access token is never
logged (nothing here logs a query string).

May import: ``bridge`` (http siblings), ``contracts``, ``thalamus.subjects``, FastAPI.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from netcortex.bridge.http.auth import AUTH_RESPONSES
from netcortex.bridge.http.context import ApiContext
from netcortex.bridge.http.hub import (
    HubFull,
    Position,
    StreamClient,
    StreamFilter,
    StreamItem,
    decode_position,
    encode_position,
    incident_item,
    outcome_item,
)
from netcortex.bridge.http.models import Error, responses
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import IncidentCursor, IncidentQuery
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery
from netcortex.errors import InvalidSubject, StoreError
from netcortex.thalamus.subjects import outcome_subject

__all__ = ["STREAM_PATH", "stream_router"]

log = structlog.get_logger(__name__)

STREAM_PATH: Final = "/api/v1/stream"
#: ``retry:`` sent first (milliseconds a client waits before reconnecting).
RETRY_MS: Final = 2000
#: Rows read from a store per backlog query.
_CHUNK: Final = 1000
#: Seconds an overflowed client's last writes may take before the connection is cut.
_OVERFLOW_GRACE: Final = 5.0


def _event(event: str, data: bytes, ident: str | None = None) -> bytes:
    head = b"" if ident is None else b"id: " + ident.encode("ascii") + b"\n"
    return head + b"event: " + event.encode("ascii") + b"\ndata: " + data + b"\n\n"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def _outcome_backlog(
    ctx: ApiContext, after: tuple[datetime, str] | None, flt: StreamFilter, limit: int
) -> tuple[list[StreamItem], int]:
    """Stored outcomes after ``after`` matching ``flt``, oldest first, the newest
    ``limit`` of them; and how many older ones were skipped."""
    with contextlib.suppress(StoreError):
        await ctx.store.flush()  # what the bus already carried is readable too
    severities = (
        None
        if flt.min_severity is None
        else [s for s in Severity if s.rank >= flt.min_severity.rank]
    )
    kept: list[StreamItem] = []
    skipped = 0
    before: OutcomeCursor | None = None
    while True:
        page = await ctx.store.query(
            OutcomeQuery(
                since=None if after is None else after[0],
                severity=severities,
                device=flt.device,
                site=flt.site,
                before=before,
                limit=_CHUNK,
            )
        )
        for outcome in page:
            if after is not None and (outcome.recorded_at, outcome.outcome_id) <= after:
                page = []  # newest first: everything further is at or before the position
                break
            try:
                subject = outcome_subject(
                    outcome.handler_id, outcome.kind.value, *outcome.target.split("|")
                )
            except InvalidSubject:
                continue  # never published either
            item = outcome_item(subject, outcome)
            if not flt.accepts(item):
                continue
            if len(kept) < limit:
                kept.append(item)
            else:
                skipped += 1
        if len(page) < _CHUNK:
            break
        before = OutcomeCursor.after(page[-1])
    kept.reverse()
    return kept, skipped


async def _incident_backlog(
    ctx: ApiContext, after: tuple[datetime, str] | None, flt: StreamFilter, limit: int
) -> tuple[list[StreamItem], int]:
    """The current version of each incident changed after ``after``, matching ``flt``,
    oldest change first (at most ``limit``); and how many older ones were skipped."""
    if ctx.incidents is None:
        return [], 0
    kept: list[StreamItem] = []
    skipped = 0
    before: IncidentCursor | None = None
    while True:
        page = list(
            await ctx.incidents.query(
                IncidentQuery(
                    since=None if after is None else after[0],
                    site=flt.site,
                    device=flt.device,
                    before=before,
                    limit=_CHUNK,
                )
            )
        )
        full = len(page) == _CHUNK
        for incident in page:
            if after is not None and (incident.updated_at, incident.incident_id) <= after:
                full = False
                break
            item = incident_item("resumed", incident)
            if not flt.accepts(item):
                continue
            if len(kept) < limit:
                kept.append(item)
            else:
                skipped += 1
        if not full:
            break
        before = IncidentCursor(page[-1].updated_at, page[-1].incident_id)
    kept.reverse()
    return kept, skipped


class _Session:
    """One client's stream: backlog, ``ready``, then live messages until the end."""

    def __init__(
        self,
        ctx: ApiContext,
        client: StreamClient,
        *,
        resume: Position | None,
        backlog: list[StreamItem],
        skipped: int,
        peer: str,
    ) -> None:
        now = datetime.now(UTC)
        self.ctx = ctx
        self.client = client
        self.resume = resume
        self.backlog = backlog
        self.skipped = skipped
        self.peer = peer
        self.position = resume if resume is not None else Position((now, ""), (now, ""))
        self.sent = 0
        self.reason = "client_closed"
        self.keepalive = ctx.config.http.stream_keepalive_seconds
        self._outcomes: set[str] = set()
        self._incidents: dict[str, int] = {}
        self._messages = ctx.hub.messages if ctx.hub is not None else None

    def _duplicate(self, item: StreamItem) -> bool:
        """Already sent by the backlog, or at/before the resume position."""
        if self.resume is None:
            return False
        if item.kind == "outcome":
            at = self.resume.outcome
            return item.ident in self._outcomes or (at is not None and item.key <= at)
        at = self.resume.incident
        if self._incidents.get(item.ident, 0) >= item.version:
            return True
        return at is not None and item.key <= at

    def _frame(self, item: StreamItem) -> bytes:
        self.position = self.position.advance(item)
        return _event(item.kind, item.data, encode_position(self.position))

    async def run(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Write the whole stream (returns when it ends; ``reason`` says why)."""
        await write(b"retry: %d\n\n" % RETRY_MS)
        if self.skipped:
            await write(_event("gap", _json({"skipped": self.skipped})))
        for old in self.backlog:
            if old.kind == "outcome":
                self._outcomes.add(old.ident)
            else:
                self._incidents[old.ident] = max(self._incidents.get(old.ident, 0), old.version)
            await write(self._frame(old))
            self._count()
        resumed = len(self.backlog)
        self.backlog = []
        await write(_event("ready", _json({"resumed": resumed, "live": True})))
        while True:
            item = await self.client.get(self.keepalive)
            if item is not None:
                if not self._duplicate(item):
                    await write(self._frame(item))
                    self._count()
                continue
            if self.client.overflowed:
                self.reason = "overflow"
                dropped = self.client.dropped
                log.warning(
                    "stream_client_overflow",
                    peer=self.peer,
                    dropped=dropped,
                    sent=self.sent,
                    queue_size=self.client.maxsize,
                )
                detail = (
                    f"client too slow: {dropped} messages dropped; "
                    "reconnect with Last-Event-ID to resume"
                )
                async with asyncio.timeout(_OVERFLOW_GRACE):
                    await write(_event("overflow", _json({"detail": detail, "dropped": dropped})))
                return
            if self.client.closed:
                self.reason = "server_stopping"
                return
            await write(b": keep-alive\n\n")

    def _count(self) -> None:
        self.sent += 1
        if self._messages is not None:
            self._messages.inc()


class _EventStreamResponse(Response):
    """A ``text/event-stream`` answer driven by a ``_Session``; ends when the client
    goes away, the session ends, or the hub closes the client."""

    media_type = "text/event-stream"

    def __init__(self, session: _Session) -> None:
        super().__init__(
            status_code=200,
            media_type=self.media_type,
            # One stream per connection: when it ends (overflow, stop) the client is
            # disconnected rather than kept alive for another request.
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "close"},
        )
        del self.headers["content-length"]
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        started = time.monotonic()
        log.info(
            "stream_client_connected",
            peer=session.peer,
            subjects=list(session.client.filter.patterns),
            severity=(
                None
                if session.client.filter.min_severity is None
                else session.client.filter.min_severity.value
            ),
            device=session.client.filter.device,
            site=session.client.filter.site,
            resumed=len(session.backlog),
            skipped=session.skipped,
            clients=session.ctx.hub.clients if session.ctx.hub is not None else 0,
        )
        complete = False
        tasks: list[asyncio.Task[None]] = []
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

            async def write(chunk: bytes) -> None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            runner = asyncio.create_task(session.run(write), name="stream-session")
            watcher = asyncio.create_task(gone(), name="stream-disconnect")
            tasks += [runner, watcher]
            done, _ = await asyncio.wait({runner, watcher}, return_when=asyncio.FIRST_COMPLETED)
            for task in (runner, watcher):
                task.cancel()
            results = await asyncio.gather(runner, watcher, return_exceptions=True)
            if watcher in done:
                session.reason = "client_closed"
            elif isinstance(results[0], TimeoutError):
                pass  # overflow: the client does not read; the connection is cut
            elif isinstance(results[0], BaseException) and not isinstance(
                results[0], asyncio.CancelledError
            ):
                session.reason = "error"
                log.warning("stream_session_failed", peer=session.peer, error=str(results[0]))
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_OVERFLOW_GRACE):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        complete = True
        finally:
            for task in tasks:  # cancelled from outside (server stop): leave nothing behind
                task.cancel()
            session.client.close()
            log.info(
                "stream_client_closed",
                peer=session.peer,
                reason=session.reason,
                sent=session.sent,
                duration_s=round(time.monotonic() - started, 3),
                complete=complete,
            )


def _json_errors(
    docs: dict[int | str, dict[str, Any]],
) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries with ``model`` rewritten as explicit JSON content: FastAPI
    would document a model under the route's own media type (``text/event-stream``),
    but refusals are JSON ``{"detail"}``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, doc in docs.items():
        entry = dict(doc)
        model = entry.pop("model", None)
        if model is not None:
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            entry["content"] = {"application/json": {"schema": ref}}
        out[status] = entry
    return out


def stream_router(ctx: ApiContext, auth: Callable[..., Awaitable[None]]) -> APIRouter:
    """``GET /api/v1/stream`` (bearer auth, or ``?access_token=``)."""
    http = ctx.config.http
    router = APIRouter(prefix="/api/v1", dependencies=[Depends(auth)], tags=["stream"])

    @router.get(
        "/stream",
        status_code=200,
        response_class=_EventStreamResponse,
        responses=_json_errors(
            responses(
                {
                    200: {
                        "description": "Server-Sent Events: outcome, incident, ready, gap, "
                        "overflow (see the module docs); never ends by itself",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    400: {"model": Error, "description": "a bad filter value or Last-Event-ID"},
                    503: {
                        "model": Error,
                        "description": "too many stream clients, the stream is not running, "
                        "or a store cannot be read",
                    },
                },
                AUTH_RESPONSES,
            )
        ),
        summary="Live outcomes and incident transitions (Server-Sent Events), resumable",
    )
    async def stream(
        request: Request,
        subject: Annotated[
            list[str] | None,
            Query(
                description="subject pattern (repeatable): reflex.link_down.>, incident.>, "
                "incident.opened.*; default reflex.> and incident.>"
            ),
        ] = None,
        severity: Annotated[
            str | None, Query(description="minimum severity: info, warn, high or critical")
        ] = None,
        device: Annotated[
            str | None,
            Query(description="outcomes of this device / incidents involving it"),
        ] = None,
        site: Annotated[str | None, Query(description="site slug")] = None,
        last_event_id: Annotated[
            str | None,
            Query(description="resume after this message id (when the header cannot be set)"),
        ] = None,
        access_token: Annotated[
            str | None,
            Query(description="the API token, for clients that cannot send the header"),
        ] = None,
        last_event_id_header: Annotated[
            str | None,
            Header(alias="Last-Event-ID", description="resume after this message id"),
        ] = None,
    ) -> Response:
        del access_token  # checked by the auth dependency
        try:
            flt = StreamFilter.parse(subject, severity, device, site)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        token = last_event_id_header if last_event_id_header is not None else last_event_id
        resume: Position | None = None
        if token is not None:
            try:
                resume = decode_position(token.strip())
            except ValueError as exc:
                raise HTTPException(400, f"Last-Event-ID: {exc}") from None
        hub = ctx.hub
        if hub is None or not hub.running:
            return JSONResponse({"detail": "the stream is not running"}, status_code=503)
        try:
            client = hub.connect(flt)  # live messages queue up from here on
        except HubFull:
            return JSONResponse(
                {
                    "detail": f"too many stream clients (http.stream_max_clients = "
                    f"{hub.max_clients}); try again later"
                },
                status_code=503,
            )
        backlog: list[StreamItem] = []
        skipped = 0
        try:
            if resume is not None:
                outcomes, lost = await _outcome_backlog(
                    ctx, resume.outcome, flt, http.stream_max_backlog
                )
                incidents, lost_incidents = await _incident_backlog(
                    ctx, resume.incident, flt, http.stream_max_backlog
                )
                backlog = outcomes + incidents
                skipped = lost + lost_incidents
        except BaseException:
            client.close()
            raise
        peer = request.client.host if request.client else "unknown"
        return _EventStreamResponse(
            _Session(ctx, client, resume=resume, backlog=backlog, skipped=skipped, peer=peer)
        )

    return router
