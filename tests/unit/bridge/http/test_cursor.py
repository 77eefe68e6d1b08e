"""Unit tests for ``netcortex.bridge.http.cursor``: opaque, exact, tamper-refusing page cursors."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netcortex.bridge.http.cursor import (
    decode_cursor,
    decode_incident_cursor,
    encode_cursor,
    encode_incident_cursor,
)
from netcortex.contracts.incidents import IncidentCursor
from netcortex.contracts.memory import OutcomeCursor


def _token(value: object) -> str:
    """A url-safe base64 token of ``value`` as JSON (how a forger would try)."""
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TestCursor:
    @given(
        st.datetimes(
            min_value=datetime(1971, 1, 1),
            max_value=datetime(9000, 1, 1),
            timezones=st.just(UTC),
        ),
        st.text(min_size=1, max_size=64),
    )
    def test_round_trip_is_exact(self, at: datetime, outcome_id: str) -> None:
        """Any cursor decodes to the same instant (to the microsecond) and id."""
        cursor = OutcomeCursor(at, outcome_id)
        token = encode_cursor(cursor)
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert decode_cursor(token) == cursor

    def test_offset_times_keep_their_instant(self) -> None:
        """A non-UTC recorded_at round-trips to the same instant (in UTC)."""
        at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        decoded = decode_cursor(encode_cursor(OutcomeCursor(at, "x")))
        assert decoded.recorded_at == at
        assert decoded.recorded_at.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "zzz",
            "!!!!",
            "a" * 1100,
            _token({"at": 1}),
            _token([2, 1_700_000_000_000_000, "x"]),  # unknown version
            _token([True, 1_700_000_000_000_000, "x"]),  # true == 1, but not the version
            _token([1, "1700000000000000", "x"]),
            _token([1, 1.5, "x"]),
            _token([1, 1_700_000_000_000_000, ""]),
            _token([1, 1_700_000_000_000_000, 7]),
            _token([1, 10**20, "x"]),  # beyond year 9999
            _token([1, -(10**20), "x"]),
            base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        ],
    )
    def test_tampered_tokens_are_refused(self, token: str) -> None:
        """Anything the server did not issue is a ValueError, not a crash."""
        with pytest.raises(ValueError, match="not a valid cursor"):
            decode_cursor(token)

    @given(st.text(max_size=80))
    def test_arbitrary_text_never_crashes(self, token: str) -> None:
        """Random input either decodes or raises ValueError, nothing else."""
        with contextlib.suppress(ValueError):
            decode_cursor(token)


def test_incident_cursor_round_trips_exactly() -> None:
    """An incident page position survives the token to the microsecond; junk is refused."""
    position = IncidentCursor(datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC), "a" * 32)
    assert decode_incident_cursor(encode_incident_cursor(position)) == position
    with pytest.raises(ValueError, match="not a valid cursor"):
        decode_incident_cursor("!!")
