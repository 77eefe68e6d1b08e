"""nats-py exceptions that mean "the server cannot be reached or will not serve us".

Shared by every NATS client in netcortex (the thalamus bus, the JetStream dedup
store), which map them to ``BusUnavailable`` / ``StoreError`` in their own one
place. Any region may import this module (it holds library facts, no I/O).
"""

from __future__ import annotations

from typing import Final

import nats.errors
import nats.js.errors

__all__ = ["NATS_UNAVAILABLE"]

#: Connection, availability and authentication failures, ``OSError`` last (nats'
#: ``TimeoutError`` is an ``asyncio.TimeoutError``, an ``OSError``: map time-outs
#: before this tuple when they mean something else).
NATS_UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.SecureConnRequiredError,
    nats.errors.SecureConnWantedError,
    nats.errors.SecureConnFailedError,
    nats.errors.AuthorizationError,
    nats.errors.InvalidUserCredentialsError,
    nats.errors.ProtocolError,
    nats.errors.ServerNotInPoolError,
    OSError,
)
