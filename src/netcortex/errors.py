"""The netcortex error tree (any region may import this module).

Every exception netcortex raises on purpose derives from ``NetcortexError``::

    NetcortexError
    ├── ConfigError                 invalid configuration (all problems at once)
    ├── IngestError                 a receiver rejected input; ``reason`` labels the counter
    │   ├── DecodeError             malformed bytes (bad BER, bad JSON, not SNMP)
    │   ├── AuthenticationError     wrong community / USM auth / decryption / shared secret
    │   ├── PayloadTooLarge         over the configured size limit
    │   └── UnknownSource           sender not on the allow-list, unknown v3 user or engine
    ├── BusError                    the thalamus could not do what was asked
    │   ├── BusUnavailable          not connected / server gone
    │   ├── PublishTimeout          back-pressure or ack did not clear in time
    │   └── InvalidSubject          a subject or pattern that breaks the grammar
    ├── PollError                   an SNMP poll of one agent failed (``target`` names it)
    │   ├── PollTimeout             no response after every retry
    │   ├── AgentError              the agent answered with an error-status (``status``)
    │   └── PollAuthError           SNMPv3 USM refused the request (``reason``: wrong key ...)
    ├── StoreError                  an outcome store failed
    ├── RegistryError               handler registration problems
    │   └── DuplicateHandlerError   two different handlers share one id
    └── MotorError                  a writer to the outside world failed (``retryable``)

Library exceptions (nats-py, sqlite3, cryptography ...) are mapped into this tree
inside each backend with ``raise ... from exc``; receivers catch ``IngestError`` at
their boundary, log it once, count it by ``reason`` and keep serving.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentError",
    "AuthenticationError",
    "BusError",
    "BusUnavailable",
    "ConfigError",
    "DecodeError",
    "DuplicateHandlerError",
    "IngestError",
    "InvalidSubject",
    "MotorError",
    "MotorErrorReason",
    "NetcortexError",
    "PayloadTooLarge",
    "PollAuthError",
    "PollError",
    "PollTimeout",
    "PublishTimeout",
    "RegistryError",
    "StoreError",
    "UnknownSource",
]


class NetcortexError(Exception):
    """Root of every error netcortex raises on purpose."""


class ConfigError(NetcortexError):
    """Configuration is invalid. ``problems`` lists every ``(file, key, message)``."""

    def __init__(self, message: str, problems: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str, str]] = problems or []


class IngestError(NetcortexError):
    """A receiver rejected one input. ``reason`` is the ``rejected_total`` label."""

    reason: str = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DecodeError(IngestError):
    """The bytes are not a well-formed message of the expected protocol."""

    reason = "malformed"


class AuthenticationError(IngestError):
    """Credentials did not verify (community, USM digest, decryption, shared secret)."""

    reason = "auth_failed"


class PayloadTooLarge(IngestError):
    """The message exceeds the configured size limit."""

    reason = "too_large"


class UnknownSource(IngestError):
    """The sender, v3 user or engine ID is not one we accept."""

    reason = "unknown_source"


class BusError(NetcortexError):
    """The event bus could not complete an operation."""


class BusUnavailable(BusError):
    """The bus is not started, closed, or its server cannot be reached."""


class PublishTimeout(BusError):
    """A publish could not complete in time (back-pressure or a missing ack)."""


class InvalidSubject(BusError, ValueError):
    """A subject or subscription pattern breaks the subject grammar."""


class PollError(NetcortexError):
    """An SNMP poll of one agent failed. ``target`` is ``host:port`` (never a credential)."""

    def __init__(self, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.target = target


class PollTimeout(PollError):
    """The agent did not answer in time, after every retry."""


class AgentError(PollError):
    """The agent answered with a non-zero error-status (RFC 3416 name in ``status``)."""

    def __init__(self, message: str, *, target: str = "", status: str = "", index: int = 0) -> None:
        super().__init__(message, target=target)
        self.status = status
        self.index = index


class PollAuthError(PollError):
    """SNMPv3 (USM) failed for one agent: the agent reported it (usmStats* Report) or
    its answers fail our checks. ``reason``: ``wrong_digest``, ``decryption_error``,
    ``unknown_user``, ``unsupported_security_level``, ``unknown_engine_id``,
    ``not_in_time_window``. Never carries a key or passphrase."""

    def __init__(self, message: str, *, target: str = "", reason: str = "") -> None:
        super().__init__(message, target=target)
        self.reason = reason


class StoreError(NetcortexError):
    """An outcome store could not read or write."""


class RegistryError(NetcortexError):
    """A handler registry operation is invalid."""


class DuplicateHandlerError(RegistryError):
    """A different handler with the same id is already registered."""


class MotorErrorReason(StrEnum):
    """Why a writer to the outside world failed."""

    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


class MotorError(NetcortexError):
    """A motor write failed; ``retryable`` says whether the outbox should try again."""

    def __init__(
        self, message: str, *, retryable: bool, reason: MotorErrorReason = MotorErrorReason.UNKNOWN
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason
