"""Motor: writers to the outside world — NetBox journal entries through a durable outbox.

Issue 7. The outcome store asks ``JournalPolicy.wants`` inside ``record()`` and
writes a journal job in the same transaction as the outcome (``contracts.outbox``);
``JournalDelivery`` drains those jobs into NetBox with ``NetboxJournalClient``:
leases, retries with backoff, a rate limit, dead letters, and an idempotency
marker in every entry (``format.marker``) so each outcome appears once. With
association enabled (issue 8) an incident gets one entry of its own, updated on
every change (``format.incident_marker``), and its outcomes' jobs are superseded.

Modules, in the order a job meets them: ``policy`` (which outcomes), ``format``
(what the entry says), ``netbox`` (the REST calls), ``delivery`` (the worker).
May import: ``contracts``, ``config``, ``errors``, ``metrics``, ``logs``.
"""

from __future__ import annotations

from netcortex.motor.delivery import JournalDelivery
from netcortex.motor.format import (
    incident_kind,
    incident_marker,
    incident_placement,
    journal_kind,
    marker,
    placement,
    render_comment,
    render_incident_comment,
)
from netcortex.motor.netbox import (
    AssignedObject,
    Assignment,
    JournalRequestError,
    NetboxJournalClient,
    TokenBucket,
    parse_retry_after,
)
from netcortex.motor.policy import RECOVERY_CLOSES, JournalPolicy, is_recovery

__all__ = [
    "RECOVERY_CLOSES",
    "AssignedObject",
    "Assignment",
    "JournalDelivery",
    "JournalPolicy",
    "JournalRequestError",
    "NetboxJournalClient",
    "TokenBucket",
    "incident_kind",
    "incident_marker",
    "incident_placement",
    "is_recovery",
    "journal_kind",
    "marker",
    "parse_retry_after",
    "placement",
    "render_comment",
    "render_incident_comment",
]
