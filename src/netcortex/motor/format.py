"""Motor: what a NetBox journal entry says about an outcome (issue 7; pure, no I/O).

* ``journal_kind``: NetBox's ``kind`` choice — ``info`` → ``info``, ``warn`` →
  ``warning``, ``high``/``critical`` → ``danger``, and every recovery
  (``link_up`` ...) → ``success`` whatever its severity.
* ``render_comment``: the entry's Markdown — a heading with the summary, a
  small table (severity, when it happened and when netcortex recorded it in
  UTC ISO 8601, which source saw it, the target and site, the corroboration
  count when recorded, the handler), a link back to the outcome in the
  netcortex API when ``api_base_url`` is configured, and last the idempotency
  marker line ``netcortex-outcome: <outcome_id>``.
* ``marker``: that line. The delivery worker searches NetBox for it before it
  creates an entry, so a retry after a lost response never writes a second
  one; it is plain text (no Markdown around it) so NetBox's ``q`` search,
  a case-insensitive substring match on ``comments``, finds it verbatim.

Text from the network (summaries built from interface descriptions, Meraki
alert fields) is escaped before it goes into Markdown, so it can neither add
links or HTML nor break the table; every field is cut to a bound and the whole
comment stays under ``MAX_COMMENT_CHARS`` with the marker always intact.

Incidents (issue 8): ``render_incident_comment`` describes one incident (its
summary and state, a table of rule, root, severity, times, site and member
count, the members and the evidence outcome ids, each list cut with "… and N
more", a link to ``/api/v1/incidents/<id>``), ending with the marker line
``netcortex-incident: <incident_id>``; ``incident_kind`` is the severity's kind
while open, ``success`` once resolved or stabilised and ``info`` once merged
into another incident (``details.merged_into``: the entry says "Merged", not
"Resolved", since nothing recovered); ``incident_placement``
says which NetBox object carries the entry, from the incident's root.

May import: ``contracts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.motor.policy import is_recovery

__all__ = [
    "INCIDENT_MARKER_PREFIX",
    "LINK_CLASSES",
    "MARKER_PREFIX",
    "MAX_COMMENT_CHARS",
    "IncidentPlace",
    "incident_kind",
    "incident_link",
    "incident_marker",
    "incident_placement",
    "journal_kind",
    "marker",
    "outcome_link",
    "placement",
    "render_comment",
    "render_incident_comment",
    "source_of",
]

#: The idempotency marker is ``f"{MARKER_PREFIX} {outcome_id}"``.
MARKER_PREFIX: Final = "netcortex-outcome:"
#: The idempotency marker of an incident's entry is ``f"{INCIDENT_MARKER_PREFIX} {id}"``.
INCIDENT_MARKER_PREFIX: Final = "netcortex-incident:"
#: Members and evidence ids listed at most in an incident's entry.
_MAX_LISTED: Final = 20
#: Longest comment written (NetBox does not cap ``comments``; operators read them).
MAX_COMMENT_CHARS: Final = 4000
#: Longest summary kept, and longest value in one table cell.
_MAX_SUMMARY: Final = 500
_MAX_CELL: Final = 200

_KINDS: Final = {
    Severity.INFO: "info",
    Severity.WARN: "warning",
    Severity.HIGH: "danger",
    Severity.CRITICAL: "danger",
}
# Markdown's active characters, plus ``|`` (table cells) and ``<``/``>`` (HTML).
_MD_SPECIAL: Final = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")
_WHITESPACE: Final = re.compile(r"\s+")


#: Event classes whose target is ``device|interface`` (the second part is an interface).
LINK_CLASSES: Final = frozenset({"link_down", "link_up"})


def placement(outcome: ReflexOutcome) -> tuple[str | None, str | None]:
    """``(device, interface)`` names the entry about ``outcome`` belongs on.

    The device is the outcome's (enriched, canonical) device, else the first
    part of its target. The interface is the one the enrich gate found
    (``trace["interface"]``), else, for link events only, the second part of
    the target (``device|interface``); other targets' second parts are a BGP
    peer or a client, never an interface.
    """
    parts = outcome.target.split("|")
    device = outcome.device or parts[0] or None
    interface = outcome.trace.get("interface")
    if isinstance(interface, str) and interface:
        return device, interface
    event_class = outcome.fact_key.split("|", 1)[0]
    if event_class in LINK_CLASSES and len(parts) >= 2 and parts[1]:
        return device, parts[1]
    return device, None


def marker(outcome_id: str) -> str:
    """The idempotency marker line for ``outcome_id``."""
    return f"{MARKER_PREFIX} {outcome_id}"


def journal_kind(outcome: ReflexOutcome) -> str:
    """NetBox journal ``kind`` for ``outcome`` (``success`` for recoveries)."""
    if is_recovery(outcome):
        return "success"
    return _KINDS.get(outcome.severity, "info")


def source_of(subject: str) -> str:
    """``modality.channel`` of a sensory subject (``snmp.trap``), or ``""``.

    ``sensory.<modality>.<channel>.<event_class>...``: the two tokens after the
    region say which receiver saw the event, without parsing any data out of it.
    """
    parts = subject.split(".", 4)
    if len(parts) >= 3 and parts[0] == "sensory":
        return f"{parts[1]}.{parts[2]}"
    return ""


def outcome_link(api_base_url: str | None, outcome_id: str) -> str | None:
    """``<api_base_url>/api/v1/outcomes/<id>``, or ``None`` without a base URL."""
    if not api_base_url:
        return None
    return f"{api_base_url.rstrip('/')}/api/v1/outcomes/{outcome_id}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any, limit: int = _MAX_CELL) -> str:
    """One line of escaped Markdown text, at most about ``limit`` characters."""
    flat = _WHITESPACE.sub(" ", str(value)).strip()
    return _MD_SPECIAL.sub(r"\\\1", _cut(flat, limit))


def _iso(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_comment(outcome: ReflexOutcome, *, api_base_url: str | None = None) -> str:
    """The Markdown comment of ``outcome``'s journal entry (ends with the marker line).

    Args:
        outcome: the outcome to describe.
        api_base_url: the netcortex API base URL for the link back (optional).

    Returns:
        At most ``MAX_COMMENT_CHARS`` characters; never empty.
    """
    title = _text(outcome.summary or f"{outcome.handler_id} on {outcome.target}", _MAX_SUMMARY)
    heading = "Recovered" if is_recovery(outcome) else outcome.severity.value.upper()
    rows: list[tuple[str, str]] = [
        ("Severity", _text(outcome.severity.value)),
        ("Occurred", _iso(outcome.occurred_at)),
        ("Recorded", _iso(outcome.recorded_at)),
    ]
    source = source_of(outcome.subject)
    if source:
        rows.append(("Seen by", _text(source)))
    rows.append(("Target", _text(outcome.target)))
    if outcome.site:
        rows.append(("Site", _text(outcome.site)))
    corroboration = outcome.trace.get("corroboration")
    if isinstance(corroboration, int) and not isinstance(corroboration, bool):
        noun = "report" if corroboration == 1 else "reports"
        rows.append(("Corroboration", f"{corroboration} {noun} when recorded"))
    rows.append(("Handler", _text(outcome.handler_id)))
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    parts = [f"**{heading}: {title}**", table]
    link = outcome_link(api_base_url, outcome.outcome_id)
    if link:
        parts.append(f"[Outcome in netcortex](<{link}>)")
    tail = marker(outcome.outcome_id)
    body = "\n\n".join(parts)
    room = MAX_COMMENT_CHARS - len(tail) - 2
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{body}\n\n{tail}"


# ------------------------------------------------------------------ incidents (issue 8)


def incident_marker(incident_id: str) -> str:
    """The idempotency marker line of the entry about incident ``incident_id``."""
    return f"{INCIDENT_MARKER_PREFIX} {incident_id}"


def incident_link(api_base_url: str | None, incident_id: str) -> str | None:
    """``<api_base_url>/api/v1/incidents/<id>``, or ``None`` without a base URL."""
    if not api_base_url:
        return None
    return f"{api_base_url.rstrip('/')}/api/v1/incidents/{incident_id}"


def incident_kind(incident: Incident) -> str:
    """NetBox journal ``kind``: by severity while open (``danger`` for high and
    critical), ``success`` once resolved or stabilised, ``info`` once merged into
    another incident (closed, but nothing recovered: that incident's entry goes on)."""
    if _merged_into(incident) is not None:
        return "info"
    if incident.state is IncidentState.RESOLVED or incident.flapping is False:
        return "success"
    return _KINDS.get(incident.severity, "info")


def _merged_into(incident: Incident) -> str | None:
    """The incident a closed one was merged into (``details.merged_into``), if any."""
    into = incident.details.get("merged_into")
    if incident.state is IncidentState.RESOLVED and isinstance(into, str) and into:
        return into
    return None


@dataclass(frozen=True, slots=True)
class IncidentPlace:
    """Where an incident's entry goes: a NetBox site (by slug), or a device and
    optionally one of its interfaces (the device when NetBox lacks it)."""

    device: str | None = None
    interface: str | None = None
    site: str | None = None


def incident_placement(incident: Incident) -> IncidentPlace:
    """The NetBox object of ``incident``'s root.

    ``device:<n>`` and ``bgp:<d>|<peer>`` → the device; ``interface:<d>|<if>`` →
    the interface; ``cable:<a>~<b>`` → the a-end interface; ``site:<slug>`` → the
    site. An unknown root falls back to the first member (``device`` or
    ``device|interface``).
    """
    kind, _, rest = incident.root.partition(":")
    if kind == "site" and rest:
        return IncidentPlace(site=rest)
    if kind == "cable" and rest:
        rest = rest.split("~", 1)[0]
        kind = "interface"
    if kind in ("device", "bgp") and rest:
        return IncidentPlace(device=rest.split("|", 1)[0] or None)
    if kind != "interface" or not rest:
        rest = incident.members[0] if incident.members else ""
    device, _, interface = rest.partition("|")
    return IncidentPlace(device=device or None, interface=interface or None)


def _listed(items: tuple[str, ...], limit: int = _MAX_LISTED) -> list[str]:
    shown = [f"- {_text(item)}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"- … and {len(items) - limit} more")
    return shown


def render_incident_comment(incident: Incident, *, api_base_url: str | None = None) -> str:
    """The Markdown comment of ``incident``'s journal entry (ends with its marker line).

    Returns:
        At most ``MAX_COMMENT_CHARS`` characters; never empty.
    """
    title = _text(incident.summary or f"{incident.rule} on {incident.root}", _MAX_SUMMARY)
    merged_into = _merged_into(incident)
    if merged_into is not None:
        state = "Merged"
    elif incident.state is IncidentState.RESOLVED:
        state = "Stabilised" if incident.flapping is False else "Resolved"
    elif incident.flapping:
        state = "Flapping"
    else:
        state = f"Open, {incident.severity.value.upper()}"
    rows: list[tuple[str, str]] = [
        ("Rule", _text(incident.rule)),
        ("Root", _text(incident.root)),
        ("Severity", _text(incident.severity.value)),
        ("Opened", _iso(incident.opened_at)),
        ("Updated", _iso(incident.updated_at)),
    ]
    if merged_into is not None:
        rows.append(("Merged into", _text(merged_into)))
        if incident.resolved_at is not None:
            rows.append(("Merged", _iso(incident.resolved_at)))
    elif incident.resolved_at is not None:
        rows.append(("Resolved", _iso(incident.resolved_at)))
    if incident.site:
        rows.append(("Site", _text(incident.site)))
    rows.append(("Members", str(len(incident.members))))
    rows.append(("Version", str(incident.version)))
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    parts = [f"**{state}: {title}**", table]
    if incident.members:
        parts.append("\n".join(["Members:", *_listed(incident.members)]))
    if incident.evidence:
        parts.append("\n".join(["Evidence (outcome ids):", *_listed(incident.evidence)]))
    link = incident_link(api_base_url, incident.incident_id)
    if link:
        parts.append(f"[Incident in netcortex](<{link}>)")
        if merged_into is not None and re.fullmatch(r"[\w-]+", merged_into):
            parts.append(f"[Merged into](<{incident_link(api_base_url, merged_into)}>)")
    tail = incident_marker(incident.incident_id)
    body = "\n\n".join(parts)
    room = MAX_COMMENT_CHARS - len(tail) - 2
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{body}\n\n{tail}"
