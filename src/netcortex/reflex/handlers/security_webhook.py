"""Reflex handler ``security_webhook``: Meraki security alerts, at Meraki's own level.

Pattern ``sensory.meraki.webhook.security.>``. Meraki puts the level in the
**top-level** ``alertLevel`` field of the webhook body (see
``shared/fixtures/meraki/security_*.json``), not inside ``alertData``.

Where the body sits in the event: the webhook receiver puts the Meraki body in
``SensoryEvent.payload`` as it is (top level). A receiver that wraps it as
``payload["body"]`` is accepted too; the top level wins when both carry an
``alertLevel``. Level mapping: ``informational``/``warning``/``high``/``critical``
(case and surrounding blanks ignored) → ``info``/``warn``/``high``/``critical``;
anything else, or no level at all, → ``warn`` (an unknown security alert is
never silently ``info``). May import: ``reflex.protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from netcortex.reflex.handlers._common import echo_details
from netcortex.reflex.protocol import ReflexOutcome, SensoryEvent, Severity

__all__ = ["MERAKI_LEVELS", "SecurityWebhookHandler", "meraki_severity"]

#: Meraki ``alertLevel`` → netcortex severity. Anything else maps to ``warn``.
MERAKI_LEVELS: Mapping[str, Severity] = MappingProxyType(
    {
        "informational": Severity.INFO,
        "warning": Severity.WARN,
        "high": Severity.HIGH,
        "critical": Severity.CRITICAL,
    }
)

#: Body fields echoed first, then ``alertData.*`` ones, then the rest by name.
_DETAIL_KEYS: tuple[str, ...] = (
    "alertType",
    "alertTypeId",
    "alertLevel",
    "alertId",
    "occurredAt",
    "deviceName",
    "deviceSerial",
    "networkName",
    "alertData.message",
    "alertData.signature",
    "alertData.srcIp",
    "alertData.destIp",
    "alertData.protocol",
    "alertData.blocked",
    "alertData.eventType",
    "alertData.sha256",
)


def meraki_severity(level: object) -> Severity:
    """Map a Meraki ``alertLevel`` value to a ``Severity`` (unknown or missing → ``warn``)."""
    if isinstance(level, str):
        return MERAKI_LEVELS.get(level.strip().lower(), Severity.WARN)
    return Severity.WARN


def _body(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Meraki body: the payload itself, or ``payload["body"]`` when only that has a level."""
    if "alertLevel" not in payload:
        nested = payload.get("body")
        if isinstance(nested, Mapping):
            return nested
    return payload


def _flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields plus ``alertData.<key>`` for each field of ``alertData``."""
    flat = {k: v for k, v in body.items() if k != "alertData"}
    data = body.get("alertData")
    if isinstance(data, Mapping):
        flat.update({f"alertData.{k}": v for k, v in data.items() if isinstance(k, str)})
    return flat


class SecurityWebhookHandler:
    """A Meraki security alert: severity from ``alertLevel``, target as the receiver set it."""

    id = "security_webhook"
    patterns: tuple[str, ...] = ("sensory.meraki.webhook.security.>",)
    #: Meraki re-sends alerts and repeats ongoing ones; five minutes join them (issue 3)
    dedup_window = 300.0
    #: nominal severity when the level is unknown (also used for gate-stopped outcomes)
    severity = Severity.WARN

    async def handle(self, event: SensoryEvent) -> ReflexOutcome:
        """Record the alert with the mapped severity and up to 16 echoed body fields."""
        body = _body(event.payload)
        alert = body.get("alertType") or body.get("alertTypeId") or "Security alert"
        device = body.get("deviceName") or event.device or event.target
        network = body.get("networkName")
        where = f"{device} ({network})" if network else f"{device}"
        return ReflexOutcome.for_event(
            self.id,
            event,
            severity=meraki_severity(body.get("alertLevel")),
            summary=f"{alert} on {where}",
            details=echo_details(_flatten(body), _DETAIL_KEYS),
        )
