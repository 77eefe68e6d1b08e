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

May import: ``contracts``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.motor.policy import is_recovery

__all__ = [
    "LINK_CLASSES",
    "MARKER_PREFIX",
    "MAX_COMMENT_CHARS",
    "journal_kind",
    "marker",
    "outcome_link",
    "placement",
    "render_comment",
    "source_of",
]

#: The idempotency marker is ``f"{MARKER_PREFIX} {outcome_id}"``.
MARKER_PREFIX: Final = "netcortex-outcome:"
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
