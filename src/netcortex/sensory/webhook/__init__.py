"""Sensory / webhook: the Meraki Dashboard webhook receiver (framework-free).

Flow: the HTTP layer (``bridge/http``) → ``receiver.MerakiWebhookReceiver.ingest``
(content type, JSON, ``auth.SharedSecretAuth``, ``schema.MerakiAlert``, replay
window, idempotency) → ``normalize.MerakiNormalizer`` (event class, canonical
target, payload) → bounded queue → publisher tasks → ``contracts.bus.EventBus``.
No HTTP framework is imported here.
"""

from netcortex.sensory.webhook.auth import SharedSecretAuth
from netcortex.sensory.webhook.normalize import SOURCE, MerakiNormalizer
from netcortex.sensory.webhook.receiver import MerakiWebhookReceiver, WebhookResponse
from netcortex.sensory.webhook.schema import MerakiAlert

__all__ = [
    "SOURCE",
    "MerakiAlert",
    "MerakiNormalizer",
    "MerakiWebhookReceiver",
    "SharedSecretAuth",
    "WebhookResponse",
]
