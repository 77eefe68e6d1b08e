"""Bridge, HTTP: the API's request and response bodies as pydantic models.

They exist so the OpenAPI document says exactly what the server answers
(schemathesis checks every response against it). Hot routes build their JSON
from plain dicts (``outcome_to_dict``, ``views.window_dict``) and never
instantiate these models; the tests validate real answers with them instead.

May import: ``contracts`` (vocabularies) and pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

__all__ = [
    "Check",
    "Error",
    "Health",
    "Incident",
    "IncidentPage",
    "InventoryCheck",
    "OutboxJob",
    "OutboxState",
    "Outcome",
    "OutcomePage",
    "Problem",
    "Problems",
    "Readiness",
    "ReadinessChecks",
    "RetryDeadIn",
    "RetryDeadOut",
    "WebhookAccepted",
    "WebhookDuplicate",
    "WebhookRejected",
    "Window",
    "WindowIn",
    "WindowList",
    "responses",
]

SeverityName = Literal["info", "warn", "high", "critical"]
KindName = Literal["logged", "skipped", "suppressed", "errored"]
ScopeName = Literal["device", "interface", "site", "role", "tag"]
JobStateName = Literal["pending", "delivered", "dead", "superseded"]
IncidentStateName = Literal["open", "resolved"]

#: Longest window ``target`` accepted over HTTP (``device|interface`` of NetBox names).
MAX_TARGET: Final = 256
#: Longest window ``reason`` accepted over HTTP (it is logged and listed).
MAX_REASON: Final = 1024
#: Longest window ``rrule`` accepted over HTTP.
MAX_RRULE: Final = 512
#: Most job ids one ``POST /outbox/retry-dead`` may name, and the longest id.
MAX_RETRY_IDS: Final = 1000
MAX_JOB_ID: Final = 256


def responses(
    *parts: Mapping[int | str, Mapping[str, Any]],
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: the documented answers of ``parts`` merged."""
    out: dict[int | str, dict[str, Any]] = {}
    for part in parts:
        for status, doc in part.items():
            out[status] = {**out.get(status, {}), **doc}
    return out


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(_Out):
    """Any refusal: what was wrong, in one line (never a secret, never a traceback)."""

    detail: str = Field(examples=["limit: must be at most 1000"])


class Problem(_Out):
    """One thing wrong with a request body."""

    field: str = Field(description="the body field (``timezone``, ``end`` ...) or ``body``")
    message: str


class Problems(_Out):
    """A request body that cannot be accepted: every problem at once."""

    detail: str
    problems: list[Problem]


class Health(_Out):
    """The process is alive and serving HTTP."""

    status: Literal["ok"]


class Check(_Out):
    """One readiness check."""

    ok: bool
    detail: str


class InventoryCheck(Check):
    """The inventory check, with the age of the snapshot in use."""

    age_seconds: float | None = Field(
        description="seconds since the inventory snapshot was taken; null when none is "
        "loaded or no inventory is configured"
    )


class ReadinessChecks(_Out):
    """Every readiness check by name."""

    engine: Check
    bus: Check
    store: Check
    inventory: InventoryCheck


class Readiness(_Out):
    """Whether the engine can take work: started, bus connected, store writable,
    inventory loaded."""

    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks


class Outcome(_Out):
    """A reflex outcome (``contracts.codec.outcome_to_dict``), with its decision trace."""

    outcome_id: str
    handler_id: str
    event_id: str
    subject: str
    kind: KindName
    severity: SeverityName
    target: str
    device: str | None
    site: str | None
    summary: str
    diagnostic: str
    fact_key: str
    occurred_at: str = Field(description="ISO 8601 with offset")
    recorded_at: str = Field(description="ISO 8601 with offset")
    details: dict[str, Any]
    role: str | None
    trace: dict[str, Any] = Field(description="the decision trace (gates and their facts)")
    schema_version: int


class OutcomePage(_Out):
    """One page of outcomes, newest first (``recorded_at``, then ``outcome_id``, descending)."""

    items: list[Outcome]
    next_cursor: str | None = Field(
        description="pass as ``cursor`` for the next page; null on the last page"
    )


class Incident(_Out):
    """An incident (``bridge.views.incident_dict``): outcomes correlated by one rule."""

    id: str
    rule: str = Field(description="cable_pair, device_root, bgp_over_link, site_outage or flapping")
    root: str = Field(
        description="what it is about: device:<name>, interface:<device>|<if>, "
        "cable:<a>~<b>, site:<slug> or bgp:<device>|<peer>"
    )
    state: IncidentStateName
    severity: SeverityName = Field(description="the highest severity among its evidence")
    summary: str
    members: list[str] = Field(description="the targets involved (device or device|interface)")
    evidence: list[str] = Field(description="outcome ids, in the order they joined")
    inhibited: list[str] = Field(description="outcome ids that are symptoms of the root")
    opened_at: str = Field(description="ISO 8601 with offset")
    updated_at: str = Field(description="last change, ISO 8601 with offset")
    resolved_at: str | None = Field(description="null while open")
    site: str | None = Field(description="the site, when all members share one")
    flapping: bool | None = Field(
        description="flap rule: true while flapping, false once stabilised; else null"
    )
    version: int = Field(description="1 when opened, +1 on every change")
    details: dict[str, Any]


class IncidentPage(_Out):
    """One page of incidents, newest change first (``updated_at``, then ``id``, descending)."""

    items: list[Incident]
    next_cursor: str | None = Field(
        description="pass as ``cursor`` for the next page; null on the last page"
    )


class Window(_Out):
    """A maintenance window as ``netcortex maintenance list --json`` prints it."""

    id: str
    scope: ScopeName
    target: str
    start: str = Field(description="first occurrence start, ISO 8601 in the window's timezone")
    end: str = Field(description="first occurrence end (exclusive), ISO 8601")
    rrule: str | None
    timezone: str
    reason: str
    source: Literal["config", "store"] = Field(
        description="``config``: from maintenance.windows (read-only here); ``store``: added "
        "at run time"
    )
    active: bool


class WindowList(_Out):
    """Every window (config file and store), ordered by start."""

    items: list[Window]


class WindowIn(BaseModel):
    """A window to add (or replace, by ``id``); ``end`` or ``duration``, not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "sw1-card",
                    "scope": "device",
                    "target": "ms-west",
                    "start": "now",
                    "duration": "2h",
                    "reason": "line card swap",
                }
            ]
        },
    )

    id: StrictStr = Field(
        min_length=1, max_length=64, description="letters, digits, '.', '_', '-' (1..64)"
    )
    scope: ScopeName
    target: StrictStr = Field(
        max_length=MAX_TARGET,
        description="device name, ``device|interface``, site slug, role slug or tag slug",
    )
    start: StrictStr = Field(
        max_length=64,
        description="``now`` or ISO 8601; without an offset it is wall-clock time in ``timezone``",
    )
    end: StrictStr | None = Field(
        default=None, max_length=64, description="exclusive end, same forms as start"
    )
    duration: StrictInt | StrictStr | None = Field(
        default=None,
        description="instead of end: seconds, or a span such as ``90m``, ``2h``, ``1h30m``, ``1d``",
    )
    rrule: StrictStr | None = Field(
        default=None,
        max_length=MAX_RRULE,
        description="RFC 5545 RRULE, e.g. ``FREQ=WEEKLY;BYDAY=SU`` (HOURLY or coarser; it must "
        "recur within 10 years, and at most 20000 times between start and now)",
    )
    timezone: StrictStr = Field(
        default="UTC", max_length=64, description="IANA zone for naive times and rrule"
    )
    reason: StrictStr = Field(default="", max_length=MAX_REASON)

    @field_validator("duration")
    @classmethod
    def _short_duration(cls, v: int | str | None) -> int | str | None:
        # A bound on the text form (Field(max_length) would rename the union's branch).
        if isinstance(v, str) and len(v) > 64:
            raise ValueError("at most 64 characters")
        return v


class OutboxJob(_Out):
    """One NetBox journal job (``bridge.views.job_dict``); ``job_id`` is the outcome id,
    or ``incident:<incident_id>`` for an incident's entry (issue 8)."""

    job_id: str
    state: JobStateName
    incident_id: str | None = Field(
        default=None, description="incident jobs: the incident (else null)"
    )
    handler_id: str = Field(description="the outcome's handler; incident jobs: incident:<rule>")
    severity: SeverityName
    device: str | None
    target: str
    summary: str
    recorded_at: str = Field(description="when the outcome was recorded, ISO 8601")
    attempts: int = Field(description="delivery attempts ended so far")
    last_error: str = Field(description="why the last attempt failed (dead: the reason)")
    created_at: str = Field(
        description="when the job was written with its outcome, or last requeued (ISO 8601); "
        "journal.max_age_seconds is measured from it"
    )
    next_attempt_at: str = Field(description="earliest next attempt (pending jobs), ISO 8601")
    finished_at: str | None = Field(
        description="when it was delivered, dead-lettered or superseded"
    )
    entry_id: int | None = Field(description="the NetBox journal entry id once delivered")


class OutboxState(_Out):
    """The NetBox journal outbox: jobs by state, the backlog's age, and optionally the
    jobs of one state (``?state=``)."""

    pending: int
    delivered: int
    dead: int
    superseded: int = Field(
        default=0, description="outcome jobs whose outcome became part of an incident's entry"
    )
    oldest_pending_at: str | None = Field(
        description="``created_at`` of the oldest pending job (ISO 8601); null when none"
    )
    oldest_pending_age_seconds: float | None = Field(
        description="seconds since ``oldest_pending_at``; null when nothing is pending"
    )
    state: JobStateName | None = Field(description="the state listed in ``items``, if any")
    items: list[OutboxJob] = Field(
        description="with ``?state=``: up to ``limit`` jobs in that state, oldest first; else empty"
    )


class RetryDeadIn(BaseModel):
    """Which dead jobs to requeue: the given ``job_ids``, or every dead job."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"job_ids": ["<outcome id>"]}]}
    )

    job_ids: list[StrictStr] | None = Field(
        default=None,
        max_length=MAX_RETRY_IDS,
        description="job (= outcome) ids to requeue; omitted or null: every dead job",
    )

    @field_validator("job_ids")
    @classmethod
    def _short_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(len(i) > MAX_JOB_ID for i in v):
            raise ValueError(f"a job id has at most {MAX_JOB_ID} characters")
        return v


class RetryDeadOut(_Out):
    """How many dead jobs were requeued (pending again, due now)."""

    requeued: int


class WebhookAccepted(_Out):
    """The alert was authenticated, validated and queued for publishing."""

    status: Literal["accepted"]
    event_id: str
    event_class: str
    subject: str


class WebhookDuplicate(_Out):
    """The alert was seen before (same ``alertId``): nothing new is published."""

    status: Literal["duplicate"]
    event_id: str = Field(description="the event id of the first delivery")


class WebhookRejected(_Out):
    """The alert was refused; ``reason`` is the ``netcortex_rejected_total`` label."""

    status: Literal["rejected"]
    reason: str
    detail: str
