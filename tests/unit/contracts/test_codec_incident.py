"""``contracts.codec``: incidents round-trip through ``encode_incident`` /
``decode_incident`` (the journal outbox stores an incident job's payload so)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from netcortex.contracts.codec import (
    decode_incident,
    encode_incident,
    incident_from_dict,
    incident_to_dict,
)
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import IncidentState
from netcortex.errors import DecodeError
from tests.unit.motor.conftest import incident


def test_an_open_incident_round_trips() -> None:
    """Every field survives encode → decode, tuples and times included."""
    made = incident(3, inhibited=("c" * 32,))
    assert decode_incident(encode_incident(made)) == made
    assert incident_from_dict(incident_to_dict(made)) == made


def test_a_resolved_flap_incident_round_trips() -> None:
    """``resolved_at``, ``flapping`` False and a non-ASCII summary survive."""
    made = incident(
        5,
        rule="flapping",
        root="interface:sw1-north|GigabitEthernet1/0/3",
        state=IncidentState.RESOLVED,
        severity=Severity.WARN,
        summary="Gi1/0/3 — flapping ⇄ stabilised",
        flapping=False,
        site=None,
    )
    decoded = decode_incident(encode_incident(made).decode())
    assert decoded == made
    assert decoded.resolved_at is not None
    assert decoded.flapping is False


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'{"incident_id": "x"}',
        json.dumps({**incident_to_dict(incident()), "state": "gone"}).encode(),
        json.dumps({**incident_to_dict(incident()), "version": "2"}).encode(),
        json.dumps({**incident_to_dict(incident()), "details": [1]}).encode(),
        json.dumps({**incident_to_dict(incident()), "schema_version": 999}).encode(),
    ],
    ids=["garbage", "array", "missing", "state", "version", "details", "schema"],
)
def test_anything_else_is_a_decode_error(data: bytes) -> None:
    """Malformed payloads raise ``DecodeError``, never something else."""
    with pytest.raises(DecodeError):
        decode_incident(data)


def test_decoding_keeps_the_version_it_was_given() -> None:
    """The version is what the outbox's upsert compares: it is kept exactly."""
    assert decode_incident(encode_incident(replace(incident(), version=41))).version == 41
