"""Unit tests for the contracts: value types, vocabularies and the JSON codec."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import netcortex.contracts as contracts
from netcortex.contracts import (
    EVENT_CLASSES,
    OutcomeKind,
    ReflexOutcome,
    SensoryEvent,
    Severity,
    new_event_id,
    outcome_id_for,
)
from netcortex.contracts.codec import (
    decode_event,
    decode_outcome,
    encode_event,
    encode_outcome,
    outcome_to_dict,
)
from netcortex.errors import DecodeError
from netcortex.testing import make_event


class TestPublicSurface:
    def test_contracts_exports_are_fixed(self) -> None:
        """The contracts package exports exactly the agreed names (a change is deliberate)."""
        assert set(contracts.__all__) == {
            "EVENT_CLASSES", "SCHEMA_VERSION", "BusMessage", "EventBus", "Gate", "OutcomeKind",
            "OutcomeCursor", "OutcomeQuery", "OutcomeStore", "ReflexHandler", "ReflexOutcome",
            "SensoryEvent", "Severity", "Sink", "Subscription", "new_event_id", "outcome_id_for",
            "BgpSession", "DedupResult", "DedupStore", "Device", "Interface", "SemanticMemory",
        }  # fmt: skip
        for name in contracts.__all__:
            assert hasattr(contracts, name)

    def test_event_classes_are_the_design_vocabulary(self) -> None:
        """EVENT_CLASSES is the closed vocabulary of DESIGN.md."""
        assert {
            "link_down", "link_up", "bgp_backward_transition", "bgp_established",
            "device_reboot", "device_down", "device_up", "security", "config_change",
            "auth_failure", "other",
        } == EVENT_CLASSES  # fmt: skip


class TestSeverity:
    def test_order(self) -> None:
        """Severities rank info < warn < high < critical."""
        ranks = [s.rank for s in (Severity.INFO, Severity.WARN, Severity.HIGH, Severity.CRITICAL)]
        assert ranks == sorted(ranks) == [0, 1, 2, 3]


class TestEventId:
    def test_ids_are_unique_and_sortable_by_creation(self) -> None:
        """Ids made one after another sort in creation order and never repeat."""
        ids = [new_event_id() for _ in range(5000)]
        assert len(set(ids)) == len(ids)
        assert ids == sorted(ids)
        assert all(len(i) == 26 for i in ids)


class TestSensoryEvent:
    def test_is_frozen(self) -> None:
        """A SensoryEvent cannot be mutated, payload included."""
        ev = make_event(payload={"a": 1})
        with pytest.raises(dataclasses.FrozenInstanceError):
            ev.target = "x"  # type: ignore[misc]
        with pytest.raises(TypeError):
            ev.payload["a"] = 2  # type: ignore[index]

    def test_rejects_unknown_class_and_naive_times(self) -> None:
        """Unknown event classes and naive datetimes are refused at construction."""
        with pytest.raises(ValueError, match="event_class"):
            make_event("bogus")
        with pytest.raises(ValueError, match="timezone"):
            SensoryEvent(
                id="x", subject="sensory.a.b.other.x", event_class="other", source="a.b",
                target="x", observed_at=datetime(2026, 1, 1),
            )  # fmt: skip


class TestCodec:
    def test_event_round_trip(self) -> None:
        """encode_event/decode_event reproduce the event exactly."""
        ev = make_event("link_down", device="r1", interface="Gi1/0/3", payload={"if_index": 3})
        assert decode_event(encode_event(ev)) == ev

    def test_outcome_round_trip_and_field_names(self) -> None:
        """Outcomes round-trip and use the DESIGN.md field names on the wire."""
        ev = make_event("link_down", device="r1", interface="Gi1/0/3")
        out = ReflexOutcome.for_event("link_down", ev, severity=Severity.HIGH, summary="down")
        assert decode_outcome(encode_outcome(out)) == out
        assert set(outcome_to_dict(out)) >= {
            "outcome_id", "handler_id", "event_id", "subject", "kind", "severity", "target",
            "device", "site", "summary", "diagnostic", "fact_key", "occurred_at", "recorded_at",
        }  # fmt: skip
        assert out.fact_key == "link_down|r1|Gi1/0/3"

    def test_outcome_role_and_trace_round_trip(self) -> None:
        """An outcome's role and decision trace survive encode/decode."""
        ev = make_event("link_down", device="sw1-north", interface="Gi1/0/3")
        out = ReflexOutcome.for_event(
            "link_down", ev, severity=Severity.HIGH, summary="down", role="switch",
            trace={"decided_by": "dedup", "corroboration": 3, "tags": ["core"]},
        )  # fmt: skip
        back = decode_outcome(encode_outcome(out))
        assert back == out
        assert back.role == "switch"
        assert back.trace["corroboration"] == 3

    def test_outcome_without_role_and_trace_decodes(self) -> None:
        """A record written before role and trace existed decodes with None and an empty trace."""
        raw = json.loads(encode_outcome(ReflexOutcome.for_event(
            "link_down", make_event(), severity=Severity.HIGH, summary="down"
        )))  # fmt: skip
        del raw["role"], raw["trace"]
        back = decode_outcome(json.dumps(raw))
        assert back.role is None
        assert dict(back.trace) == {}

    def test_schema_version_checked(self) -> None:
        """A record with another schema_version is refused with a DecodeError."""
        raw = json.loads(encode_event(make_event()))
        raw["schema_version"] = 99
        with pytest.raises(DecodeError, match="schema_version"):
            decode_event(json.dumps(raw))

    @given(st.binary(max_size=200))
    def test_garbage_raises_decode_error_only(self, data: bytes) -> None:
        """Arbitrary bytes either decode or raise DecodeError, never anything else."""
        for decode in (decode_event, decode_outcome):
            with contextlib.suppress(DecodeError):
                decode(data)


class TestOutcome:
    def test_outcome_id_is_derived_and_stable(self) -> None:
        """The same handler and event always give the same outcome id; another handler does not."""
        ev = make_event()
        a = ReflexOutcome.for_event("h", ev, severity=Severity.INFO, summary="")
        b = ReflexOutcome.for_event("h", ev, severity=Severity.INFO, summary="")
        assert a.outcome_id == b.outcome_id == outcome_id_for("h", ev.id)
        assert outcome_id_for("other", ev.id) != a.outcome_id

    def test_kind_and_severity_are_coerced_and_checked(self) -> None:
        """String kinds/severities become enums; unknown ones are refused."""
        ev = make_event()
        out = ReflexOutcome.for_event("h", ev, severity=Severity.WARN, summary="")
        again = dataclasses.replace(out, kind="skipped")  # type: ignore[arg-type]
        assert again.kind is OutcomeKind.SKIPPED
        with pytest.raises(ValueError, match="nope"):
            dataclasses.replace(out, severity="nope")  # type: ignore[arg-type]
