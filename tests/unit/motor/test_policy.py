"""Unit tests for ``netcortex.motor.policy``: which outcomes become journal entries."""

from __future__ import annotations

import pytest

from netcortex.config import JournalConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.motor.policy import RECOVERY_CLOSES, JournalPolicy, is_recovery
from netcortex.reflex.facts import RECOVERY_CLASSES
from netcortex.reflex.registry import builtin_handlers
from tests.unit.motor.conftest import outcome


def recovery(handler_id: str, event_class: str | None = None) -> ReflexOutcome:
    """A logged ``info`` outcome of recovery handler ``handler_id``."""
    return outcome(
        handler_id=handler_id, event_class=event_class or handler_id, severity=Severity.INFO
    )


class TestJournalPolicy:
    def test_default_is_logged_high_and_critical(self) -> None:
        """By default only logged outcomes of severity high or critical are wanted."""
        policy = JournalPolicy.from_config(JournalConfig())
        assert policy.wants(outcome(severity=Severity.HIGH))
        assert policy.wants(outcome(severity=Severity.CRITICAL))
        assert not policy.wants(outcome(severity=Severity.WARN))
        assert not policy.wants(outcome(severity=Severity.INFO, handler_id="config_change"))

    @pytest.mark.parametrize(
        "kind", [OutcomeKind.SKIPPED, OutcomeKind.SUPPRESSED, OutcomeKind.ERRORED]
    )
    def test_only_logged_outcomes(self, kind: OutcomeKind) -> None:
        """Duplicates, maintenance shadows and errors never become entries."""
        policy = JournalPolicy()
        assert not policy.wants(outcome(kind=kind, severity=Severity.CRITICAL))
        assert not policy.wants(
            outcome(handler_id="link_up", event_class="link_up", kind=kind, severity=Severity.INFO)
        )

    def test_min_severity(self) -> None:
        """``min_severity: warn`` adds warn outcomes; info ones stay out."""
        policy = JournalPolicy.from_config(JournalConfig(min_severity="warn"))
        assert policy.wants(outcome(severity=Severity.WARN, handler_id="device_reboot"))
        assert not policy.wants(outcome(severity=Severity.INFO, handler_id="config_change"))

    @pytest.mark.parametrize("handler_id", sorted(RECOVERY_CLOSES))
    def test_recoveries_are_wanted_although_info(self, handler_id: str) -> None:
        """link_up, bgp_established and device_up are wanted by default (they are info)."""
        assert JournalPolicy().wants(recovery(handler_id))

    def test_recoveries_can_be_turned_off(self) -> None:
        """``include_recoveries: false`` leaves recoveries out."""
        policy = JournalPolicy.from_config(JournalConfig(include_recoveries=False))
        assert not policy.wants(recovery("link_up"))

    def test_handler_filter_keeps_the_recovery_of_a_listed_handler(self) -> None:
        """With handlers [link_down], link_down and its recovery link_up pass; bgp ones do not."""
        policy = JournalPolicy(handlers=["link_down"])
        assert policy.wants(outcome())
        assert policy.wants(recovery("link_up"))
        assert not policy.wants(
            outcome(handler_id="bgp_drop", event_class="bgp_backward_transition")
        )
        assert not policy.wants(recovery("bgp_established"))

    def test_handler_filter_may_name_the_recovery_alone(self) -> None:
        """Listing only device_up writes device_up but not device_down."""
        policy = JournalPolicy(handlers=["device_up"])
        assert policy.wants(recovery("device_up"))
        assert not policy.wants(outcome(handler_id="device_down", event_class="device_down"))

    def test_never_raises(self) -> None:
        """Anything that is not an outcome is simply not wanted (the store calls this inline)."""
        policy = JournalPolicy()
        assert policy.wants(object()) is False  # type: ignore[arg-type]
        assert policy.wants(None) is False  # type: ignore[arg-type]

    def test_repr_names_the_rule(self) -> None:
        """The repr shows the severity floor, the handler filter and the recoveries."""
        text = repr(JournalPolicy(min_severity="warn", handlers=["link_down"]))
        assert "warn" in text
        assert "link_down" in text
        assert "link_up" in text


class TestRecoveryTable:
    def test_recovery_pairs_match_the_reflex_handlers(self) -> None:
        """RECOVERY_CLOSES names built-in handlers whose event classes reflex pairs as
        recovery → fact (``reflex.facts.RECOVERY_CLASSES``), and every pair is covered."""
        handlers = {h.id: h for h in builtin_handlers()}
        class_of = {hid: h.patterns[0].split(".")[3] for hid, h in handlers.items()}
        for recovery_id, closes_id in RECOVERY_CLOSES.items():
            assert recovery_id in handlers
            assert closes_id in handlers
            assert RECOVERY_CLASSES[class_of[closes_id]] == class_of[recovery_id]
            assert handlers[recovery_id].severity is Severity.INFO  # type: ignore[attr-defined]
        assert set(RECOVERY_CLASSES.values()) == {class_of[r] for r in RECOVERY_CLOSES}

    def test_is_recovery(self) -> None:
        """Recoveries are told apart by handler id."""
        assert is_recovery(recovery("link_up"))
        assert not is_recovery(outcome())
