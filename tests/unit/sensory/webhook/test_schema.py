"""Unit tests for ``MerakiAlert``: coercions, required fields, input-free error details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from netcortex.sensory.webhook.schema import MerakiAlert, validation_detail
from tests.unit.sensory.webhook._helpers import FIXTURES, SECRET, fixture_body


def _detail(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        MerakiAlert.model_validate(body)
    return validation_detail(info.value)


class TestMerakiAlert:
    @pytest.mark.parametrize("name", FIXTURES)
    def test_every_fixture_validates(self, name: str) -> None:
        """Each shared fixture body is a valid alert; sentAt is aware UTC."""
        alert = MerakiAlert.model_validate(fixture_body(name))
        assert alert.sent_at.tzinfo is UTC
        assert alert.organization_id == "1234567"
        assert alert.alert_type_id
        assert alert.alert_type

    def test_body_is_as_received_without_the_secret(self) -> None:
        """``body`` is the input mapping minus sharedSecret (values untouched)."""
        raw = fixture_body("settings_changed.json")
        alert = MerakiAlert.model_validate(raw)
        expected = dict(raw)
        del expected["sharedSecret"]
        assert alert.body == expected
        assert alert.body["deviceSerial"] == ""  # as sent, though the field is None
        assert SECRET not in repr(alert)

    def test_coercions(self) -> None:
        """Numbers become text, null alertData/tags become empty, blanks become None."""
        alert = MerakiAlert.model_validate(
            {
                "version": 0.1,
                "sentAt": "2026-03-14T12:00:00",
                "organizationId": 1234567,
                "alertId": 42,
                "alertTypeId": "",
                "alertType": "Something",
                "alertData": None,
                "networkTags": None,
                "deviceTags": [7],
                "deviceSerial": "  ",
                "occurredAt": "",
            }
        )
        assert alert.version == "0.1"
        assert alert.organization_id == "1234567"
        assert alert.alert_id == "42"
        assert alert.alert_type_id is None
        assert alert.alert_data == {}
        assert alert.network_tags == []
        assert alert.device_tags == ["7"]
        assert alert.device_serial is None
        assert alert.occurred_at is None
        assert alert.sent_at == datetime(2026, 3, 14, 12, tzinfo=UTC)  # naive = UTC

    def test_offsets_are_converted_to_utc(self) -> None:
        """A sentAt with an offset is the same instant in UTC."""
        alert = MerakiAlert.model_validate(
            fixture_body("security_rogue_ap.json", sentAt="2026-03-14T13:40:30+02:00")
        )
        assert alert.sent_at == datetime(2026, 3, 14, 11, 40, 30, tzinfo=UTC)

    def test_extra_fields_are_kept(self) -> None:
        """Unknown fields are allowed and stay in the body."""
        alert = MerakiAlert.model_validate(fixture_body("security_rogue_ap.json", custom={"x": 1}))
        assert alert.body["custom"] == {"x": 1}


class TestValidationDetail:
    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"sentAt": None}, "sentAt: Field required"),
            ({"sentAt": "yesterday-ish secret-value"}, "sentAt: invalid datetime"),
            ({"sentAt": 1_700_000_000}, "sentAt: invalid datetime, expected an ISO 8601 string"),
            ({"organizationId": None}, "organizationId: Field required"),
            ({"organizationId": "  "}, "organizationId: must not be empty"),
            ({"alertTypeId": None, "alertType": ""}, "alertTypeId or alertType is required"),
            ({"alertData": ["secret-value"]}, "alertData: Input should be a valid dictionary"),
            ({"networkTags": ["ok", {"secret-value": 1}]}, "networkTags.1: Input should be"),
            ({"occurredAt": "not a time secret-value"}, "occurredAt: invalid datetime"),
            ({"sharedSecret": ["secret-value"]}, "sharedSecret: Input should be a valid string"),
        ],
    )
    def test_names_field_and_problem_never_the_value(
        self, changes: dict[str, Any], expected: str
    ) -> None:
        """The detail says where and what, never echoing the offending input."""
        detail = _detail(fixture_body("device_aps_went_down.json", **changes))
        assert expected in detail
        assert "secret-value" not in detail
        assert SECRET not in detail

    def test_many_problems_are_capped(self) -> None:
        """At most five problems are listed; the rest are counted."""
        body = {f"{k}": ["x"] for k in ("deviceName", "deviceSerial", "networkId", "networkName")}
        body.update({"alertType": ["x"], "alertLevel": ["x"], "networkTags": 5})
        detail = _detail(body)
        assert detail.count(";") == 5
        assert detail.endswith("more")
