"""Thalamus: the event bus region — subject grammar, in-memory and NATS JetStream buses.

``subjects`` is the only subject code (any region may import it). The concrete
buses, ``InMemoryEventBus`` (embedded default) and ``NatsEventBus`` (JetStream,
scale-out), are picked by ``bus.backend`` in ``app.py``; other regions receive an
``EventBus`` (``contracts.bus``) and never import them.
"""

from netcortex.thalamus.memory import InMemoryEventBus
from netcortex.thalamus.nats import NatsEventBus

__all__ = ["InMemoryEventBus", "NatsEventBus"]
