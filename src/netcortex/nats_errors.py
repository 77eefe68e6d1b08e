"""nats-py exceptions that mean "the server cannot be reached or will not serve us".

Shared by every NATS client in netcortex (the thalamus bus, the JetStream
key-value users: dedup store, correlator lease, poll membership), which map them
to ``BusUnavailable`` / ``StoreError`` in their own one place; ``describe`` is
the ``Type: message`` text their logs and errors carry. Any region may import
this module (it holds library facts, no I/O).
"""

from __future__ import annotations

from typing import Final

import nats.errors
import nats.js.errors

__all__ = ["NATS_CONNECTIVITY", "NATS_UNAVAILABLE", "describe"]

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

#: ``NATS_UNAVAILABLE`` plus the time-outs: "could not talk to the server" for a
#: client whose every time-out means that (the key-value users).
NATS_CONNECTIVITY: Final[tuple[type[BaseException], ...]] = (
    nats.errors.TimeoutError,
    TimeoutError,
    *NATS_UNAVAILABLE,
)


def describe(exc: BaseException) -> str:
    """``Type: message`` even when the exception's ``__str__`` itself fails (some nats-py
    errors format fields that may be unset)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the real error
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
