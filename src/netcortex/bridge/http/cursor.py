"""Bridge, HTTP: the opaque page cursor of ``GET /api/v1/outcomes`` (and ``/incidents``).

A cursor is ``OutcomeCursor.after(last outcome of the page)`` — ``(recorded_at,
outcome_id)`` — as url-safe base64 (no padding) of a small JSON array
``[1, recorded_at in integer microseconds since the epoch, outcome_id]`` (``1``
is the format version). Clients treat it as opaque; ``decode_cursor`` refuses
anything it did not make (wrong shape, version, type or range) with a
``ValueError`` the route answers 400. A well-formed but edited cursor only
moves the page position, so it needs no signature.

``GET /api/v1/incidents`` uses the same format for ``(updated_at, incident_id)``
(``encode_incident_cursor`` / ``decode_incident_cursor``).

May import: ``contracts``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Final

from netcortex.contracts.incidents import IncidentCursor
from netcortex.contracts.memory import OutcomeCursor

__all__ = ["decode_cursor", "decode_incident_cursor", "encode_cursor", "encode_incident_cursor"]

_VERSION: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
#: Longest cursor accepted (an outcome id is short; this bounds the decode work).
_MAX_LEN: Final = 1024
_MIN_US: Final = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // _US
_MAX_US: Final = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _US


def encode_cursor(cursor: OutcomeCursor) -> str:
    """The url-safe token for ``cursor`` (exact to the microsecond)."""
    micros = (cursor.recorded_at - _EPOCH) // _US
    raw = json.dumps([_VERSION, micros, cursor.outcome_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> OutcomeCursor:
    """The cursor ``encode_cursor`` made ``token`` from.

    Raises:
        ValueError: not a cursor this server issued (the message says what is wrong,
            without echoing the token).
    """
    if not token or len(token) > _MAX_LEN:
        raise ValueError("not a valid cursor (empty or too long)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a valid cursor (use next_cursor of the previous page)") from None
    if not (
        isinstance(data, list)
        and len(data) == 3
        and type(data[0]) is int
        and data[0] == _VERSION
        and type(data[1]) is int
        and isinstance(data[2], str)
        and data[2]
        and _MIN_US <= data[1] <= _MAX_US
    ):
        raise ValueError("not a valid cursor (use next_cursor of the previous page)")
    return OutcomeCursor(_EPOCH + timedelta(microseconds=data[1]), data[2])


def encode_incident_cursor(cursor: IncidentCursor) -> str:
    """The url-safe token for an incident page position (``encode_cursor``'s format)."""
    return encode_cursor(OutcomeCursor(cursor.updated_at, cursor.incident_id))


def decode_incident_cursor(token: str) -> IncidentCursor:
    """The position ``encode_incident_cursor`` made ``token`` from.

    Raises:
        ValueError: not a cursor this server issued.
    """
    position = decode_cursor(token)
    return IncidentCursor(position.recorded_at, position.outcome_id)
