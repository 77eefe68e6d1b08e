"""Bridge: what the CLI and the HTTP API share — parsing operator input, shaping output.

``netcortex outcomes`` / ``GET /api/v1/outcomes`` take the same filters, and
``netcortex maintenance add|list`` / ``POST|GET /api/v1/maintenance`` the same
window fields; this module holds that logic once, so the two edges cannot drift:

* times and spans: ``parse_time`` (``--since``: ``10m`` ago, ``now`` or ISO 8601),
  ``parse_when`` (a window bound: ``now`` or ISO 8601, naive = wall-clock time in
  the window's zone), ``parse_duration`` (``3600``, ``90m``, ``2h``, ``1h30m``);
* ``outcome_query``: filter values → ``OutcomeQuery``;
* ``build_window``: window fields → a validated ``MaintenanceWindow`` (every
  problem at once, through the calendar's own ``window_problems``, then its
  ``recurrence_problems``: a recurring window must be cheap to evaluate);
* ``window_dict`` / ``window_rows``: the JSON shape of a window as ``maintenance
  list --json`` prints it and the API answers it (with ``source`` and ``active``);
* ``outbox_dict`` / ``job_dict`` / ``outbox_line``: the journal outbox's counts and
  jobs as ``netcortex outbox`` prints them and ``GET /api/v1/outbox`` answers them
  (issue 7), ``fmt_age`` for the backlog's age;
* ``incident_query`` / ``incident_dict``: the filters of ``netcortex incidents`` and
  ``GET /api/v1/incidents`` → ``IncidentQuery``, and the JSON shape of an incident
  both print (issue 8).

Every message names the value the way the caller's user typed it: the CLI
passes its option names (``--since``), the API its parameter names (``since``).
Errors are ``UsageError`` (a ``ValueError``); ``WindowProblems`` carries one
``(field, message)`` per problem.

Part of ``bridge`` (the edge): may import everything.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import (
    INCIDENT_RULES,
    Incident,
    IncidentCursor,
    IncidentQuery,
    IncidentState,
)
from netcortex.contracts.memory import MaintenanceWindow, OutcomeCursor, OutcomeQuery
from netcortex.contracts.outbox import JournalJob, OutboxStats
from netcortex.contracts.reflex import OutcomeKind

__all__ = [
    "API_WINDOW_NAMES",
    "CLI_WINDOW_NAMES",
    "UsageError",
    "WindowProblems",
    "build_window",
    "covers",
    "fmt_age",
    "fmt_local",
    "incident_dict",
    "incident_query",
    "job_dict",
    "outbox_dict",
    "outbox_line",
    "outcome_query",
    "parse_choices",
    "parse_duration",
    "parse_time",
    "parse_when",
    "window_dict",
    "window_rows",
]

_E = TypeVar("_E", bound=Enum)

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: A window span: ``3600s``, ``90m``, ``2h``, ``1h30m``, ``1d``, ``1w`` (plain seconds apart).
_SPAN: Final = re.compile(r"(\d+)\s*(s|sec|m|min|h|d|w)", re.IGNORECASE)
_SPANS: Final = re.compile(r"^(?:\d+\s*(?:s|sec|m|min|h|d|w)\s*)+$", re.IGNORECASE)

#: ``MaintenanceWindow`` field (plus ``duration``) → the ``maintenance add`` option.
CLI_WINDOW_NAMES: Final[Mapping[str, str]] = {
    "id": "ID",
    "scope": "--scope",
    "target": "--target",
    "start": "--start",
    "end": "--end/--duration",
    "end_value": "--end",
    "duration": "--duration",
    "rrule": "--rrule",
    "timezone": "--timezone",
    "reason": "--reason",
}
#: The same for the API: the JSON body's field names.
API_WINDOW_NAMES: Final[Mapping[str, str]] = {
    "id": "id",
    "scope": "scope",
    "target": "target",
    "start": "start",
    "end": "end",
    "end_value": "end",
    "duration": "duration",
    "rrule": "rrule",
    "timezone": "timezone",
    "reason": "reason",
}
#: Outcome filter → the ``netcortex outcomes`` option (the API uses the bare names).
CLI_QUERY_NAMES: Final[Mapping[str, str]] = {
    "since": "--since",
    "until": "--until",
    "limit": "--limit",
}


class UsageError(ValueError):
    """A bad value from an operator (a CLI option or an API parameter).

    Attributes:
        param: the filter or field it is about (``since``, ``limit`` ...), when one is.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class WindowProblems(UsageError):
    """A maintenance window that cannot be built; every problem at once.

    Attributes:
        problems: ``(field, message)`` pairs; ``field`` is a ``MaintenanceWindow``
            field name (or ``duration``), the message names it as the caller does.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("\n".join(message for _, message in problems))
        self.problems = list(problems)


# -- times -------------------------------------------------------------------------


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse a query bound: a duration ago (``30s``, ``10m``, ``2h``, ``1d``, ``1w``),
    ``now``, or an ISO-8601 time (naive times are taken as UTC).

    Raises:
        UsageError: the value is neither.
    """
    current = now or datetime.now(UTC)
    text = value.strip()
    if text.lower() == "now":
        return current
    m = _DURATION.match(text)
    if m:
        amount, unit = float(m.group(1)), m.group(2).lower()
        try:
            return current - timedelta(seconds=amount * _UNIT_SECONDS[unit])
        except OverflowError:  # "99999999w": before year 1
            raise UsageError(f"invalid time {value!r}: that is too long ago") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid time {value!r}: use a duration ago (30s, 10m, 2h, 1d, 1w) "
            "or an ISO-8601 time such as 2026-01-31T09:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_when(value: str, zone: ZoneInfo, *, option: str, now: datetime | None = None) -> datetime:
    """Parse a window bound: ``now`` or ISO 8601 (naive = wall-clock time in ``zone``).

    The result is in ``zone`` and whole seconds (``now`` is truncated to the second).

    Raises:
        UsageError: not a time, or it has a fraction of a second (``option`` is named).
    """
    text = value.strip()
    if text.lower() == "now":
        current = now or datetime.now(UTC)
        return current.replace(microsecond=0).astimezone(zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid {option} {value!r}: use 'now' or an ISO-8601 time such as "
            "2026-12-06T22:00:00 (in the window's timezone) or 2026-12-06T21:00:00Z",
            param=option,
        ) from None
    if parsed.microsecond:
        raise UsageError(f"invalid {option} {value!r}: give whole seconds", param=option)
    if parsed.tzinfo is None:
        # fold=0: a wall-clock time inside a DST gap is shifted forward (RFC 5545).
        return parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(zone)
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is after year 9999 in UTC
        raise UsageError(f"invalid {option} {value!r}: after year 9999", param=option) from None


def parse_duration(value: str, *, option: str = "--duration") -> timedelta:
    """Parse a window length: seconds (``3600``) or ``2h``, ``90m``, ``3600s``, ``1h30m``, ``1d``.

    Raises:
        UsageError: not a positive whole number of seconds in those forms.
    """
    text = value.strip()
    if text.isdigit():
        seconds = int(text)
    elif _SPANS.match(text):
        seconds = sum(int(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _SPAN.findall(text))
    else:
        raise UsageError(
            f"invalid {option} {value!r}: use seconds or a span such as 90m, 2h, 1h30m, 1d",
            param=option,
        )
    if seconds <= 0:
        raise UsageError(f"invalid {option} {value!r}: must be longer than 0 seconds", param=option)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(f"invalid {option} {value!r}: too long", param=option) from None


def fmt_local(moment: datetime, zone_name: str) -> str:
    """``moment`` in the IANA zone ``zone_name``, ISO 8601 with its offset."""
    return moment.astimezone(ZoneInfo(zone_name)).isoformat()


# -- outcomes ----------------------------------------------------------------------


def parse_choices(values: Sequence[str] | None, enum: type[_E], what: str) -> list[_E] | None:
    """``["high,critical", "warn"]`` → enum members, case-insensitive (``None`` = any).

    Raises:
        UsageError: a value is not a member (``what`` names the filter).
    """
    if not values:
        return None
    allowed = [str(m.value) for m in enum]
    out: list[_E] = []
    for chunk in values:
        for raw in chunk.split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item not in allowed:
                raise UsageError(
                    f"invalid {what} {raw.strip()!r}: choose from {', '.join(allowed)}",
                    param=what,
                )
            member = enum(item)
            if member not in out:
                out.append(member)
    return out or None


def outcome_query(
    *,
    since: str | None = None,
    until: str | None = None,
    handler: str | None = None,
    severity: Sequence[str] | None = None,
    kind: Sequence[str] | None = None,
    device: str | None = None,
    site: str | None = None,
    limit: int = 100,
    max_limit: int | None = None,
    before: OutcomeCursor | None = None,
    names: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> OutcomeQuery:
    """Build the ``OutcomeQuery`` the filters describe (the CLI's and the API's).

    Args:
        since, until: ``parse_time`` forms; ``since`` must be before ``until``.
        handler, device, site: exact matches (empty = any).
        severity, kind: repeatable, each item possibly a comma list.
        limit: rows wanted, 1 .. ``max_limit``.
        before: continue after this cursor (the API's next page).
        names: how to name ``since``/``until``/``limit`` in messages (the CLI passes
            ``CLI_QUERY_NAMES``; default: the bare names).
        now: the reference time for relative bounds (default: the current time).

    Raises:
        UsageError: the first bad value, with ``param`` set to the filter's name.
    """
    label = {"since": "since", "until": "until", "limit": "limit", **(names or {})}
    if limit < 1:
        raise UsageError(f"invalid {label['limit']} {limit}: must be at least 1", param="limit")
    if max_limit is not None and limit > max_limit:
        raise UsageError(
            f"invalid {label['limit']} {limit}: must be at most {max_limit}", param="limit"
        )
    current = now or datetime.now(UTC)
    bounds: dict[str, datetime | None] = {}
    for name, value in (("since", since), ("until", until)):
        try:
            bounds[name] = parse_time(value, now=current) if value else None
        except UsageError as exc:
            raise UsageError(str(exc), param=name) from None
    start, end = bounds["since"], bounds["until"]
    if start and end and start >= end:
        raise UsageError(f"{label['since']} must be earlier than {label['until']}", param="since")
    return OutcomeQuery(
        since=start,
        until=end,
        handler_id=handler or None,
        severity=parse_choices(severity, Severity, "severity"),
        kind=parse_choices(kind, OutcomeKind, "kind"),
        device=device or None,
        site=site or None,
        before=before,
        limit=limit,
    )


# -- maintenance windows -----------------------------------------------------------


def build_window(
    *,
    id: str,
    scope: str,
    target: str,
    start: str,
    end: str | None = None,
    duration: str | None = None,
    rrule: str | None = None,
    timezone: str = "UTC",
    reason: str = "",
    names: Mapping[str, str] = CLI_WINDOW_NAMES,
    now: datetime | None = None,
) -> MaintenanceWindow:
    """The window these fields describe, validated by the calendar's own rules.

    ``start``/``end`` are ``parse_when`` forms (naive = wall-clock time in
    ``timezone``); exactly one of ``end`` and ``duration`` (``parse_duration``
    forms, absolute elapsed time) is given.

    Raises:
        WindowProblems: every problem, each message naming the field as ``names`` says.
    """
    from netcortex.memory.semantic.maintenance import recurrence_problems, window_problems

    problems: list[tuple[str, str]] = []
    begin: datetime | None = None
    finish: datetime | None = None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(
            (
                "timezone",
                f"invalid {names['timezone']} {timezone!r}: use an IANA zone such as UTC, "
                "Europe/Amsterdam or America/New_York",
            )
        )
        zone = ZoneInfo("UTC")  # still parse the times, to name every problem at once
    try:
        begin = parse_when(start, zone, option=names["start"], now=now)
    except UsageError as exc:
        problems.append(("start", str(exc)))
    if (end is None) == (duration is None):
        problems.append(
            (
                "end",
                f"invalid {names['end']}: give either {names['end_value']} or "
                f"{names['duration']}, not both or neither",
            )
        )
    elif end is not None:
        try:
            finish = parse_when(end, zone, option=names["end_value"], now=now)
        except UsageError as exc:
            problems.append(("end", str(exc)))
    elif duration is not None:
        try:
            span = parse_duration(duration, option=names["duration"])
        except UsageError as exc:
            problems.append(("duration", str(exc)))
        else:
            if begin is not None:
                # Absolute elapsed time: "2h" is two hours, also across a DST change.
                try:
                    finish = (begin.astimezone(UTC) + span).astimezone(zone)
                except OverflowError:
                    problems.append(
                        (
                            "duration",
                            f"invalid {names['duration']} {duration!r}: ends after year 9999",
                        )
                    )
    if problems or begin is None or finish is None:
        raise WindowProblems(problems)
    window = MaintenanceWindow(
        id=id,
        scope=scope,
        target=target,
        start=begin,
        end=finish,
        rrule=rrule or None,
        timezone=timezone,
        reason=reason,
    )
    found = window_problems(window) or recurrence_problems(window, now=now)
    if found:
        raise WindowProblems([(f, f"invalid {names.get(f, f)}: {m}") for f, m in found])
    return window


def covers(window: MaintenanceWindow, at: datetime) -> bool:
    """Whether an occurrence of ``window`` covers ``at`` (ignoring every other window)."""
    from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar

    # A calendar of this one window, never started: no I/O, the calendar's own rules.
    alone = SqliteMaintenanceCalendar(Path("unused.db"), windows=[window], reload_interval=0)
    target: dict[str, Any] = (
        {"tags": (window.target,)} if window.scope == "tag" else {window.scope: window.target}
    )
    return alone.active(at, **target) is not None


def window_dict(window: MaintenanceWindow, source: str, active: bool) -> dict[str, Any]:
    """The JSON shape of one window: its fields (bounds in its own zone), ``source``
    (``config`` or ``store``) and ``active``."""
    return {
        "id": window.id,
        "scope": window.scope,
        "target": window.target,
        "start": fmt_local(window.start, window.timezone),
        "end": fmt_local(window.end, window.timezone),
        "rrule": window.rrule,
        "timezone": window.timezone,
        "reason": window.reason,
        "source": source,
        "active": active,
    }


def window_rows(
    windows: Sequence[MaintenanceWindow], config_ids: Collection[str], at: datetime
) -> list[dict[str, Any]]:
    """``window_dict`` of each window in order; ``active`` evaluated at ``at``."""
    return [
        window_dict(w, "config" if w.id in config_ids else "store", covers(w, at)) for w in windows
    ]


# -- the journal outbox (issue 7) ----------------------------------------------------


def fmt_age(seconds: float) -> str:
    """A short age: ``42s``, ``4m12s``, ``3h05m``, ``2d04h`` (whole units, never negative)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def outbox_dict(stats: OutboxStats, now: datetime) -> dict[str, Any]:
    """The JSON shape of the outbox's counts: ``pending``, ``delivered``, ``dead``,
    ``superseded``, ``oldest_pending_at`` (ISO 8601 or ``None``) and
    ``oldest_pending_age_seconds``."""
    oldest = stats.oldest_pending_at
    return {
        "pending": stats.pending,
        "delivered": stats.delivered,
        "dead": stats.dead,
        "superseded": stats.superseded,
        "oldest_pending_at": _iso(oldest),
        "oldest_pending_age_seconds": (
            None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3)
        ),
    }


def outbox_line(stats: OutboxStats, now: datetime) -> str:
    """One human line: ``3 pending (oldest 4m12s), 1,204 delivered, 2 dead``."""
    pending = f"{stats.pending:,} pending"
    if stats.oldest_pending_at is not None:
        age = (now - stats.oldest_pending_at).total_seconds()
        pending += f" (oldest {fmt_age(age)})"
    line = f"{pending}, {stats.delivered:,} delivered, {stats.dead:,} dead"
    if stats.superseded:
        line += f", {stats.superseded:,} superseded"
    return line


def job_dict(job: JournalJob) -> dict[str, Any]:
    """The JSON shape of one journal job: where it is, what it is about, how it went.

    An incident job (issue 8) says ``incident:<rule>`` as its handler, the root as
    its target and the incident's last change as ``recorded_at``.
    """
    outcome, incident = job.outcome, job.incident
    about: dict[str, Any]
    if incident is not None:
        about = {
            "incident_id": incident.incident_id,
            "handler_id": f"incident:{incident.rule}",
            "severity": incident.severity.value,
            "device": None,
            "target": incident.root,
            "summary": incident.summary,
            "recorded_at": _iso(incident.updated_at),
        }
    elif outcome is not None:
        about = {
            "incident_id": None,
            "handler_id": outcome.handler_id,
            "severity": outcome.severity.value,
            "device": outcome.device,
            "target": outcome.target,
            "summary": outcome.summary,
            "recorded_at": _iso(outcome.recorded_at),
        }
    else:  # not produced by the outboxes; kept total for the type checker
        about = {
            "incident_id": None,
            "handler_id": "",
            "severity": "info",
            "device": None,
            "target": "",
            "summary": "",
            "recorded_at": _iso(job.created_at),
        }
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        **about,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "created_at": _iso(job.created_at),
        "next_attempt_at": _iso(job.next_attempt_at),
        "finished_at": _iso(job.finished_at),
        "entry_id": job.entry_id,
    }


# -- incidents (issue 8) -------------------------------------------------------------


def incident_query(
    *,
    state: str | None = None,
    rule: str | None = None,
    site: str | None = None,
    device: str | None = None,
    since: str | None = None,
    limit: int = 100,
    max_limit: int | None = None,
    before: IncidentCursor | None = None,
    names: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> IncidentQuery:
    """Build the ``IncidentQuery`` the filters describe (the CLI's and the API's).

    Args:
        state: ``open`` or ``resolved`` (case-insensitive; empty = any).
        rule: one of ``INCIDENT_RULES`` (empty = any).
        site, device: exact matches (``device``: among the members or the root).
        since: changed at or after, a ``parse_time`` form.
        limit: rows wanted, 1 .. ``max_limit``.
        before: continue after this cursor (the API's next page).
        names: how to name ``since``/``limit`` in messages (the CLI passes
            ``CLI_QUERY_NAMES``; default: the bare names).
        now: the reference time for ``since`` (default: the current time).

    Raises:
        UsageError: the first bad value, with ``param`` set to the filter's name.
    """
    label = {"since": "since", "limit": "limit", **(names or {})}
    if limit < 1:
        raise UsageError(f"invalid {label['limit']} {limit}: must be at least 1", param="limit")
    if max_limit is not None and limit > max_limit:
        raise UsageError(
            f"invalid {label['limit']} {limit}: must be at most {max_limit}", param="limit"
        )
    states = parse_choices([state] if state else None, IncidentState, "state")
    if states is not None and len(states) > 1:
        raise UsageError("invalid state: give one of open, resolved", param="state")
    if rule and rule.strip() not in INCIDENT_RULES:
        raise UsageError(
            f"invalid rule {rule.strip()!r}: choose from {', '.join(sorted(INCIDENT_RULES))}",
            param="rule",
        )
    try:
        start = parse_time(since, now=now) if since else None
    except UsageError as exc:
        raise UsageError(
            str(exc).replace("invalid time", f"invalid {label['since']}"), param="since"
        ) from None
    return IncidentQuery(
        state=None if states is None else states[0],
        rule=rule.strip() if rule else None,
        site=site or None,
        device=device or None,
        since=start,
        before=before,
        limit=limit,
    )


def incident_dict(incident: Incident) -> dict[str, Any]:
    """The JSON shape of one incident, as ``netcortex incidents --json`` prints it and
    ``GET /api/v1/incidents`` answers it (times ISO 8601 in UTC)."""
    return {
        "id": incident.incident_id,
        "rule": incident.rule,
        "root": incident.root,
        "state": incident.state.value,
        "severity": incident.severity.value,
        "summary": incident.summary,
        "members": list(incident.members),
        "evidence": list(incident.evidence),
        "inhibited": list(incident.inhibited),
        "opened_at": _iso(incident.opened_at),
        "updated_at": _iso(incident.updated_at),
        "resolved_at": _iso(incident.resolved_at),
        "site": incident.site,
        "flapping": incident.flapping,
        "version": incident.version,
        "details": dict(incident.details),
    }
