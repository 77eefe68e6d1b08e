"""Sensory / webhook: ``MerakiAlert``, the schema of a Meraki Dashboard webhook body.

A pydantic v2 model of the default "Meraki" payload template (see
``shared/fixtures/meraki``): extra fields are kept, ``version`` and the ids may
come as numbers (they become text), ``alertData: null`` is ``{}``, empty strings
in optional text fields (a network-level alert sends ``deviceSerial: ""``) are
``None``. Required: ``sentAt`` (ISO 8601; naive means UTC), ``organizationId``
and at least one of ``alertTypeId`` / ``alertType``. The model also documents the
request body in the OpenAPI schema (``MerakiAlert.model_json_schema(by_alias=True)``).

Error messages never contain the input: ``validation_detail`` builds the
rejection text from locations and messages only.

Imports: stdlib, pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = ["MerakiAlert", "validation_detail"]

#: Most validation problems named in one rejection ``detail``.
_MAX_PROBLEMS: Final = 5
#: The body key carrying the shared secret (never copied into a payload).
SECRET_KEY: Final = "sharedSecret"  # noqa: S105 - a field name, not a secret


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_to_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def _iso_datetime(value: Any) -> Any:
    """Parse an ISO 8601 string into an aware UTC datetime (naive = UTC)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            # fromisoformat's own message quotes the input: say what was wrong only.
            raise PydanticCustomError("datetime_format", "invalid datetime") from None
    else:
        raise PydanticCustomError("datetime_type", "invalid datetime, expected an ISO 8601 string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PydanticCustomError("datetime_range", "datetime out of range") from None


def _optional_datetime(value: Any) -> Any:
    value = _blank_to_none(value)
    return None if value is None else _iso_datetime(value)


_OptText = Annotated[str | None, BeforeValidator(_blank_to_none)]

#: JSON schema of a string that is not blank (what ``_blank_to_none`` leaves a value).
_NOT_BLANK: dict[str, Any] = {"type": "string", "pattern": r"\S"}
_Tags = Annotated[list[str], BeforeValidator(_none_to_empty_list)]
_When = Annotated[datetime, BeforeValidator(_iso_datetime)]
_OptWhen = Annotated[datetime | None, BeforeValidator(_optional_datetime)]


class MerakiAlert(BaseModel):
    """One Meraki Dashboard webhook alert (the default "Meraki" payload template).

    Attributes are the body's fields in snake_case; the body uses the camelCase
    aliases (``sentAt``, ``alertTypeId`` ...). ``body`` is the body as received,
    without ``sharedSecret``.
    """

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        coerce_numbers_to_str=True,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        title="MerakiAlert",
        field_title_generator=lambda name, info: info.alias or name,
        # What ``_has_alert_type`` enforces, said in the schema too (OpenAPI clients
        # and schemathesis generate bodies from it): one of the two, not blank.
        json_schema_extra={
            "anyOf": [
                {"required": ["alertTypeId"], "properties": {"alertTypeId": _NOT_BLANK}},
                {"required": ["alertType"], "properties": {"alertType": _NOT_BLANK}},
            ]
        },
    )

    version: _OptText = Field(default=None, description='payload format version, e.g. "0.1"')
    shared_secret: SecretStr | None = Field(
        default=None,
        alias="sharedSecret",
        exclude=True,
        description="the shared secret set in Dashboard (or send `Authorization: Bearer`)",
    )
    sent_at: _When = Field(alias="sentAt", description="when Meraki sent this message (UTC)")
    organization_id: Annotated[str, AfterValidator(_not_blank)] = Field(
        alias="organizationId", json_schema_extra={"pattern": r"\S"}
    )
    organization_name: _OptText = Field(default=None, alias="organizationName")
    organization_url: _OptText = Field(default=None, alias="organizationUrl")
    network_id: _OptText = Field(default=None, alias="networkId")
    network_name: _OptText = Field(default=None, alias="networkName")
    network_url: _OptText = Field(default=None, alias="networkUrl")
    network_tags: _Tags = Field(default_factory=list, alias="networkTags")
    device_serial: _OptText = Field(default=None, alias="deviceSerial")
    device_mac: _OptText = Field(default=None, alias="deviceMac")
    device_name: _OptText = Field(default=None, alias="deviceName")
    device_url: _OptText = Field(default=None, alias="deviceUrl")
    device_tags: _Tags = Field(default_factory=list, alias="deviceTags")
    device_model: _OptText = Field(default=None, alias="deviceModel")
    alert_id: _OptText = Field(default=None, alias="alertId")
    alert_type: _OptText = Field(default=None, alias="alertType")
    alert_type_id: _OptText = Field(default=None, alias="alertTypeId")
    alert_level: _OptText = Field(default=None, alias="alertLevel")
    occurred_at: _OptWhen = Field(default=None, alias="occurredAt")
    alert_data: Annotated[dict[str, Any], BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=dict, alias="alertData"
    )

    _body: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _has_alert_type(self) -> MerakiAlert:
        if self.alert_type_id is None and self.alert_type is None:
            raise PydanticCustomError("missing_alert_type", "alertTypeId or alertType is required")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _keep_body(cls, data: Any, handler: Any) -> MerakiAlert:
        alert: MerakiAlert = handler(data)
        if isinstance(data, Mapping):
            alert._body = {k: v for k, v in data.items() if k != SECRET_KEY}
        return alert

    @property
    def body(self) -> dict[str, Any]:
        """The body as received, without ``sharedSecret`` (a fresh shallow copy).

        A model built from a mapping keeps that mapping's fields and values as
        they were; otherwise (``model_construct``) it is the model's JSON dump.
        """
        if self._body is not None:
            return dict(self._body)
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def validation_detail(exc: ValidationError) -> str:
    """``"sentAt: invalid datetime; organizationId: Field required"``, never an input value."""
    problems = []
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for error in errors[:_MAX_PROBLEMS]:
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    if len(errors) > _MAX_PROBLEMS:
        problems.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(problems)
