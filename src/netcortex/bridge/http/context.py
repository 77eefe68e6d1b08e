"""Bridge, HTTP: ``ApiContext`` — everything the routes need, handed over by the engine.

The app never imports ``netcortex.app`` (that would be a cycle: the engine builds
the app); ``Engine`` fills an ``ApiContext`` with its running parts instead.

May import: ``config``, ``contracts``, ``metrics``, ``sensory.webhook.receiver``,
``bridge.http.hub`` and ``bridge.http.status`` (the stream hub and the
status sampler the engine starts and stops).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netcortex.bridge.http.hub import StreamHub
from netcortex.bridge.http.status import StatusSampler
from netcortex.config import Config
from netcortex.contracts.bus import EventBus
from netcortex.contracts.incidents import IncidentStore
from netcortex.contracts.memory import MaintenanceCalendar, OutcomeStore, SemanticMemory
from netcortex.contracts.outbox import Outbox
from netcortex.metrics import Registry
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver

__all__ = ["ApiContext"]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The engine's parts the HTTP API reads and changes.

    Attributes:
        config: the whole configuration (``http`` for the server, ``source`` for messages).
        metrics: the engine's ``Registry`` (``GET /metrics`` renders it).
        store: outcomes for ``GET /outcomes``; ``ping`` for readiness.
        calendar: the running calendar: a POSTed window applies at once.
        config_window_ids: ids of ``maintenance.windows`` (read-only over HTTP: 409).
        bus: its ``connected`` is a readiness check.
        memory: the inventory (``snapshot_age`` for readiness), ``None`` without one.
        webhook: the Meraki receiver; ``None`` when ``meraki.enabled`` is false
            (``POST /webhooks/meraki`` is then not routed: 404).
        ready: whether the engine finished starting (and is not stopping).
        outbox: the NetBox journal outbox (``GET /outbox``, ``POST /outbox/retry-dead``);
            ``None`` when ``journal.enabled`` is false (those routes then answer 404).
        wake_journal: wakes the delivery worker (requeued jobs go out at once), or ``None``.
        incidents: the incident store (``GET /incidents[/{id}]``); ``None`` when the
            engine does not correlate (those routes then answer 404).
        hub: the live stream's bus fan-out (``GET /api/v1/stream``; 503 when ``None``
            or not running).
        sampler: the rate sampler over the engine's counters (``GET /api/v1/status``).
    """

    config: Config
    metrics: Registry
    store: OutcomeStore
    calendar: MaintenanceCalendar
    config_window_ids: frozenset[str]
    bus: EventBus
    memory: SemanticMemory | None
    webhook: MerakiWebhookReceiver | None
    ready: Callable[[], bool]
    outbox: Outbox | None = None
    wake_journal: Callable[[], None] | None = None
    incidents: IncidentStore | None = None
    hub: StreamHub | None = None
    sampler: StatusSampler | None = None
