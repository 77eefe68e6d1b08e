"""Sensory / webhook: shared-secret authentication of Meraki webhooks.

Meraki's default payload puts the secret configured in Dashboard in the body's
``sharedSecret`` field; a custom payload template can send it as
``Authorization: Bearer <secret>`` instead. Either one matching is enough. Both
are compared in constant time (``hmac.compare_digest`` on UTF-8 bytes), and the
secret never leaves this object: its ``repr`` is redacted and nothing here logs.

Imports: stdlib, pydantic (``SecretStr``).
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["SharedSecretAuth", "bearer_token"]


def _utf8(text: str) -> bytes:
    # JSON may carry lone surrogates ("\ud800"); they must compare unequal, not raise.
    return text.encode("utf-8", "surrogatepass")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive).

    Returns ``None`` for a missing header, another scheme, or an empty token.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class SharedSecretAuth:
    """Checks a webhook's ``sharedSecret`` / bearer token against the configured secret.

    Args:
        secret: ``meraki.shared_secret``.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: SecretStr) -> None:
        self._secret = _utf8(secret.get_secret_value())

    def __repr__(self) -> str:
        return "SharedSecretAuth(secret=**********)"

    def verify(self, body_secret: object, authorization: str | None) -> bool:
        """True when ``body_secret`` (the body's ``sharedSecret``) or the bearer token
        in ``authorization`` equals the secret. Both are compared when both are given,
        so the time taken does not say which one failed."""
        ok = False
        if isinstance(body_secret, str):
            ok = hmac.compare_digest(_utf8(body_secret), self._secret)
        token = bearer_token(authorization)
        if token is not None:
            ok = hmac.compare_digest(_utf8(token), self._secret) or ok
        return ok
