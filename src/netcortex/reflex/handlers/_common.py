"""Reflex handlers: small pure helpers shared by the built-in handlers (not public).

Echoing upstream payload fields into an outcome and building a target from the
parts an event has are the only things several handlers do alike; both are pure
functions over the event, with no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = [
    "BGP_DETAIL_KEYS",
    "LINK_DETAIL_KEYS",
    "MAX_DETAILS",
    "MAX_VALUE_CHARS",
    "bgp_outcome",
    "bgp_parts",
    "bgp_where",
    "echo_details",
    "join_target",
    "link_outcome",
    "link_parts",
]

#: Most payload fields echoed into ``ReflexOutcome.details`` (issue 2, item 5).
MAX_DETAILS = 16
#: Longest string value echoed; longer ones are cut and marked with "…".
MAX_VALUE_CHARS = 256

#: Payload fields echoed first, most useful first; others follow by name. The
#: names are the receivers' payload vocabulary (``sensory/trap/normalize.py``:
#: IF-MIB columns in snake_case).
LINK_DETAIL_KEYS: tuple[str, ...] = (
    "if_name",
    "if_descr",
    "if_index",
    "if_alias",
    "if_admin_status",
    "if_oper_status",
    "if_type",
    "if_reason",
    "trap_name",
    "trap_oid",
)

# Never echo these, even if a receiver forgot to strip them (lower-cased, no "_"/"-").
_SECRET_WORDS = ("secret", "password", "passphrase", "token", "community", "authorization")


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    """True for keys that look like secrets (cached: payload keys repeat)."""
    folded = key.lower().replace("_", "").replace("-", "")
    return any(word in folded for word in _SECRET_WORDS)


_SKIP = object()


def _scalar(value: Any) -> Any:
    """``value`` made fit to echo (long strings cut), or ``_SKIP`` when it is not a scalar."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _SKIP


def echo_details(
    payload: Mapping[str, Any],
    preferred: Iterable[str] = (),
    *,
    limit: int = MAX_DETAILS,
) -> dict[str, Any]:
    """Pick at most ``limit`` scalar payload fields to echo into an outcome.

    The choice is deterministic: first the ``preferred`` keys in the order given,
    then every other key sorted by name. Lists, mappings, non-finite floats and
    secret-looking keys (``sharedSecret``, ``*_token`` ...) are never echoed;
    strings longer than ``MAX_VALUE_CHARS`` are cut.

    Args:
        payload: the event payload.
        preferred: keys to take first, most useful first.
        limit: most fields returned.

    Returns:
        A new dict, insertion-ordered as described.
    """
    out: dict[str, Any] = {}
    if limit <= 0 or not payload:
        return out
    for key in preferred:
        if key in payload and not _is_secret_key(key):
            value = _scalar(payload[key])
            if value is not _SKIP:
                out[key] = value
                if len(out) >= limit:
                    return out
    for key in sorted(k for k in payload if isinstance(k, str) and k not in out):
        if _is_secret_key(key):
            continue
        value = _scalar(payload[key])
        if value is not _SKIP:
            out[key] = value
            if len(out) >= limit:
                return out
    return out


def join_target(*parts: str | None, fallback: str) -> str:
    """Join the known (non-empty) parts with ``|``; ``fallback`` when none is known."""
    known = [p for p in parts if p]
    return "|".join(known) if known else fallback


def link_parts(
    device: str | None, interface: str | None, agent: str | None, payload: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """``(device, interface)`` of a link event, falling back to what the event carries.

    The device falls back to the sending agent; the interface to the payload's
    ``if_name``, then ``if_descr``, then ``if_index`` (as ``ifIndex=N``, the trap
    receiver's own spelling when no name is known).
    """
    dev = device or agent
    if interface:
        return dev, interface
    for key in ("if_name", "if_descr"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return dev, value
    index = payload.get("if_index")
    if isinstance(index, int | str) and not isinstance(index, bool) and str(index):
        return dev, f"ifIndex={index}"
    return dev, None


#: Payload fields echoed first (BGP4-MIB / CISCO-BGP4-MIB columns as the trap
#: receiver names them); others follow by name.
BGP_DETAIL_KEYS: tuple[str, ...] = (
    "bgp_remote_addr",
    "bgp_state",
    "bgp_prev_state",
    "bgp_last_error",
    "bgp_last_error_text",
    "trap_name",
    "trap_oid",
)

_PEER_KEYS = ("bgp_remote_addr", "peer")


def bgp_parts(
    device: str | None, peer: str | None, agent: str | None, payload: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """``(device, peer)`` of a BGP event: device falls back to the agent, peer to the payload."""
    if not peer:
        for key in _PEER_KEYS:
            value = payload.get(key)
            if isinstance(value, str) and value:
                peer = value
                break
    return device or agent, peer or None


def link_outcome(
    handler_id: str, severity: Severity, event: SensoryEvent, verb: str
) -> ReflexOutcome:
    """The outcome of a link handler: "Link <verb> on r1 Gi1/0/3", target ``device|interface``."""
    device, interface = link_parts(event.device, event.interface, event.agent, event.payload)
    where = " ".join(p for p in (device, interface) if p) or event.target
    return ReflexOutcome.for_event(
        handler_id,
        event,
        severity=severity,
        summary=f"Link {verb} on {where}",
        target=join_target(device, interface, fallback=event.target),
        device=device,
        details=echo_details(event.payload, LINK_DETAIL_KEYS),
    )


def bgp_outcome(
    handler_id: str, severity: Severity, event: SensoryEvent, what: str
) -> ReflexOutcome:
    """The outcome of a BGP handler: "BGP session <what> on r1 with peer …", ``device|peer``."""
    device, peer = bgp_parts(event.device, event.peer, event.agent, event.payload)
    return ReflexOutcome.for_event(
        handler_id,
        event,
        severity=severity,
        summary=f"BGP session {what} on {bgp_where(device, peer, event.target)}",
        target=join_target(device, peer, fallback=event.target),
        device=device,
        details=echo_details(event.payload, BGP_DETAIL_KEYS),
    )


def bgp_where(device: str | None, peer: str | None, target: str) -> str:
    """Human "r1 with peer 192.0.2.2" (or the part that is known) for summaries."""
    if device and peer:
        return f"{device} with peer {peer}"
    return device or (f"peer {peer}" if peer else target)
