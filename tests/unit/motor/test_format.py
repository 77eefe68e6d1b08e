"""Unit tests for ``netcortex.motor.format``: kind, placement and the Markdown comment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from netcortex.contracts.events import Severity
from netcortex.motor.format import (
    MAX_COMMENT_CHARS,
    journal_kind,
    marker,
    outcome_link,
    placement,
    render_comment,
    source_of,
)
from tests.unit.motor.conftest import outcome


class TestKind:
    @pytest.mark.parametrize(
        ("severity", "kind"),
        [
            (Severity.INFO, "info"),
            (Severity.WARN, "warning"),
            (Severity.HIGH, "danger"),
            (Severity.CRITICAL, "danger"),
        ],
    )
    def test_severity_to_kind(self, severity: Severity, kind: str) -> None:
        """info → info, warn → warning, high/critical → danger."""
        assert journal_kind(outcome(severity=severity, handler_id="config_change")) == kind

    @pytest.mark.parametrize(
        ("handler_id", "event_class"),
        [
            ("link_up", "link_up"),
            ("bgp_established", "bgp_established"),
            ("device_up", "device_up"),
        ],
    )
    def test_recoveries_are_success(self, handler_id: str, event_class: str) -> None:
        """A recovery is ``success`` whatever its severity."""
        made = outcome(handler_id=handler_id, event_class=event_class, severity=Severity.INFO)
        assert journal_kind(made) == "success"


class TestPlacement:
    def test_interface_from_the_trace(self) -> None:
        """The enriched interface is used when the enrich gate found one."""
        made = outcome(trace={"interface": "GigabitEthernet1/0/3"})
        assert placement(made) == ("sw1-north", "GigabitEthernet1/0/3")

    def test_interface_from_a_link_target(self) -> None:
        """Without enrichment, a link event's target ``device|interface`` gives the interface."""
        assert placement(outcome(trace={})) == ("sw1-north", "GigabitEthernet1/0/3")

    def test_bgp_peer_is_not_an_interface(self) -> None:
        """A BGP target's second part is a peer address: the entry goes on the device."""
        made = outcome(
            handler_id="bgp_drop",
            event_class="bgp_backward_transition",
            device="r1-north",
            interface="192.0.2.2",
            trace={},
        )
        assert placement(made) == ("r1-north", None)

    def test_device_from_the_target_when_unset(self) -> None:
        """An outcome without ``device`` falls back to the target's first part."""
        made = outcome(device=None, interface=None, trace={})
        assert placement(made)[0] == made.target.split("|")[0]


class TestComment:
    def test_comment_says_what_when_who_and_ends_with_the_marker(self) -> None:
        """Summary, UTC times, source, target, site, corroboration, link, marker last."""
        when = datetime(2026, 11, 28, 9, 0, 0, 123000, tzinfo=UTC)
        made = outcome(trace={"corroboration": 3}, recorded_at=when)
        text = render_comment(made, api_base_url="https://nc.example.com/")
        assert text.startswith("**HIGH: Link down on sw1-north GigabitEthernet1/0/3**")
        assert "| Recorded | 2026-11-28T09:00:00.123Z |" in text
        assert "| Seen by | snmp.trap |" in text
        assert "| Site | dc-north |" in text
        assert "| Corroboration | 3 reports when recorded |" in text
        assert f"(<https://nc.example.com/api/v1/outcomes/{made.outcome_id}>)" in text
        assert text.splitlines()[-1] == marker(made.outcome_id)
        assert marker(made.outcome_id) == f"netcortex-outcome: {made.outcome_id}"

    def test_no_link_without_api_base_url(self) -> None:
        """Without ``api_base_url`` there is no link back."""
        assert "api/v1/outcomes" not in render_comment(outcome())
        assert outcome_link(None, "x") is None

    def test_network_text_is_escaped(self) -> None:
        """Markdown, HTML and table syntax from the network is escaped, newlines flattened."""
        made = outcome(summary="x [click](http://evil) <script>|a|\nnext", trace={})
        first = render_comment(made).splitlines()[0]
        assert "\\[click\\]\\(http://evil\\)" in first
        assert "\\<script\\>" in first
        assert "\\|a\\|" in first
        assert "next" in first

    def test_length_is_bounded_and_marker_kept(self) -> None:
        """A huge summary is cut; the comment stays bounded and still ends with the marker."""
        made = outcome(summary="x" * 50_000)
        text = render_comment(made, api_base_url="https://nc.example.com")
        assert len(text) <= MAX_COMMENT_CHARS
        assert text.endswith(marker(made.outcome_id))

    def test_recovery_heading(self) -> None:
        """A recovery's heading says Recovered."""
        made = outcome(handler_id="link_up", event_class="link_up", severity=Severity.INFO)
        assert render_comment(made).startswith("**Recovered: ")

    @pytest.mark.parametrize(
        ("subject", "source"),
        [
            ("sensory.snmp.trap.link_down.r1.Gi1", "snmp.trap"),
            ("sensory.meraki.webhook.security.N_1", "meraki.webhook"),
            ("reflex.x.y", ""),
        ],
    )
    def test_source_of(self, subject: str, source: str) -> None:
        """The source is the subject's modality.channel."""
        assert source_of(subject) == source
