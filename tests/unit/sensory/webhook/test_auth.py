"""Unit tests for shared-secret authentication (body field or bearer header)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from netcortex.sensory.webhook.auth import SharedSecretAuth, bearer_token
from tests.unit.sensory.webhook._helpers import SECRET


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    """Only a non-empty token after the (case-insensitive) Bearer scheme counts."""
    assert bearer_token(header) == token


class TestSharedSecretAuth:
    auth = SharedSecretAuth(SecretStr(SECRET))

    @pytest.mark.parametrize(
        ("body_secret", "header", "ok"),
        [
            (SECRET, None, True),
            (None, f"Bearer {SECRET}", True),
            ("wrong", f"Bearer {SECRET}", True),
            (SECRET, "Bearer wrong", True),
            ("wrong", None, False),
            (SECRET[:-1], None, False),
            (SECRET + " ", None, False),
            (None, None, False),
            (None, SECRET, False),  # no scheme
            (123, None, False),
            (["x"], None, False),
            ("\ud800", None, False),  # a lone surrogate from JSON compares unequal, no crash
            ("", "Bearer ", False),
        ],
    )
    def test_verify(self, body_secret: object, header: str | None, ok: bool) -> None:
        """Either the body's sharedSecret or the bearer token must equal the secret."""
        assert self.auth.verify(body_secret, header) is ok

    def test_repr_hides_the_secret(self) -> None:
        """The secret never shows in repr."""
        assert SECRET not in repr(self.auth)
