"""Sensory / trap: SNMPv3 User-based Security Model for incoming notifications.

Implements the receiving side of RFC 3414 (HMAC-MD5-96, HMAC-SHA-96, DES-CBC),
RFC 7860 (HMAC-SHA-2: SHA-224/256/384/512 with 128/192/256/384-bit MACs) and
RFC 3826 (AES-128-CFB), plus AES-192/256 with either key extension in use:
Blumenthal (draft-blumenthal-aes-usm-04, what net-snmp's ``AES-192``/``AES-256``
mean) or Reeder (draft-reeder-snmpv3-usm-3desede, Cisco's ``AES-192-C`` style).
DES-CBC is TripleDES from ``cryptography``'s decrepit module with the same 8-octet
key three times (EDE with K1=K2=K3 is single DES).

A trap sender is the authoritative engine, so the receiver must already hold a
user entry per (engine ID, user name); keys are localised to each engine ID once,
in the constructor, and cached (the 1 MiB password hash is shared by every
engine ID of the same passphrase). Digests are compared in constant time.

Timeliness (RFC 3414 §3.2 step 7b, non-authoritative side): per configured
engine ID the latest (boots, time) of an *authenticated* message is kept with
the local monotonic time it arrived, so a replayed message older than the
150-second window is rejected (``not_in_time_window``). The table holds at
most one entry per configured engine ID (unknown engines never authenticate).
Within the window a replay is accepted, exactly as RFC 3414 allows.

The module-level primitives (``verify_digest``/``sign_message``,
``decrypt_scoped_pdu``/``encrypt_scoped_pdu``) and ``UsmUser.localize`` are also
the sending side used by the SNMPv3 poller (``sensory.poll.snmp``).

Imports: stdlib, ``cryptography``, netcortex.errors/config, the sibling BER codec.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from netcortex.config import V3User
from netcortex.errors import AuthenticationError, DecodeError, UnknownSource
from netcortex.sensory.trap.ber import Message, decode_scoped_pdu

__all__ = [
    "AUTH_PROTOCOLS",
    "LEVELS",
    "PRIV_PROTOCOLS",
    "TIME_WINDOW",
    "UsmSecurity",
    "UsmUser",
    "decrypt_scoped_pdu",
    "encrypt_scoped_pdu",
    "localize_key",
    "password_to_key",
    "sign_message",
    "verify_digest",
]

#: canonical auth protocol → (hashlib name, truncated MAC length in octets)
AUTH_PROTOCOLS: Final[dict[str, tuple[str, int]]] = {
    "MD5": ("md5", 12),
    "SHA": ("sha1", 12),
    "SHA-224": ("sha224", 16),
    "SHA-256": ("sha256", 24),
    "SHA-384": ("sha384", 32),
    "SHA-512": ("sha512", 48),
}

#: canonical priv protocol → (cipher, key length in octets, key extension)
PRIV_PROTOCOLS: Final[dict[str, tuple[str, int, str]]] = {
    "DES": ("des", 16, "none"),  # 8 octets key + 8 octets pre-IV
    "AES": ("aes", 16, "none"),
    "AES-192": ("aes", 24, "blumenthal"),
    "AES-256": ("aes", 32, "blumenthal"),
    "AES-192-C": ("aes", 24, "reeder"),
    "AES-256-C": ("aes", 32, "reeder"),
}

#: security level names by rank
LEVELS: Final = ("noAuthNoPriv", "authNoPriv", "authPriv")

_ONE_MIB: Final = 1_048_576

#: RFC 3414 §2.2.3: a message more than this many seconds older than the
#: authoritative engine's estimated clock is outside the time window.
TIME_WINDOW: Final = 150
#: the largest snmpEngineBoots; an engine there is unusable until re-keyed (§2.2.2)
MAX_BOOTS: Final = 2147483647


@lru_cache(maxsize=256)
def _hash_passphrase(passphrase: bytes, hash_name: str) -> bytes:
    # RFC 3414 A.2: hash 1 MiB of the passphrase repeated. Cached because many
    # engine IDs commonly share one passphrase (the costly part is this step).
    if not passphrase:
        raise ValueError("empty passphrase")
    buf = (passphrase * (_ONE_MIB // len(passphrase) + 1))[:_ONE_MIB]
    return hashlib.new(hash_name, buf).digest()


def localize_key(key: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """Localise a hashed key to ``engine_id``: ``H(key || engineID || key)``."""
    return hashlib.new(hash_name, key + engine_id + key).digest()


def password_to_key(passphrase: bytes, engine_id: bytes, hash_name: str) -> bytes:
    """RFC 3414 A.2 password-to-key with ``hash_name``, localised to ``engine_id``."""
    return localize_key(_hash_passphrase(passphrase, hash_name), engine_id, hash_name)


def _priv_key(passphrase: bytes, engine_id: bytes, hash_name: str, priv: str) -> bytes:
    _cipher, size, extension = PRIV_PROTOCOLS[priv]
    key = password_to_key(passphrase, engine_id, hash_name)
    while len(key) < size:
        if extension == "blumenthal":
            key += hashlib.new(hash_name, key).digest()
        elif extension == "reeder":
            key += password_to_key(key, engine_id, hash_name)
        else:  # pragma: no cover - every 16-octet protocol fits every hash
            raise ValueError(f"{priv} key too short for {hash_name}")
    return key[:size]


@dataclass(frozen=True, slots=True)
class UsmUser:
    """One localised USM user: keys are derived once and never printed."""

    name: bytes
    engine_id: bytes
    level: int  # index into LEVELS
    auth_protocol: str | None = None
    priv_protocol: str | None = None
    auth_key: bytes = field(default=b"", repr=False)
    priv_key: bytes = field(default=b"", repr=False)

    @classmethod
    def from_config(cls, user: V3User) -> UsmUser:
        """Localise the keys of one configured ``V3User``."""
        return cls.localize(
            user.user.encode(),
            bytes.fromhex(user.engine_id[2:]),
            auth_protocol=user.auth_protocol,
            auth_passphrase=(
                user.auth_key.get_secret_value().encode() if user.auth_key is not None else None
            ),
            priv_protocol=user.priv_protocol,
            priv_passphrase=(
                user.priv_key.get_secret_value().encode() if user.priv_key is not None else None
            ),
        )

    @classmethod
    def localize(
        cls,
        name: bytes,
        engine_id: bytes,
        *,
        auth_protocol: str | None = None,
        auth_passphrase: bytes | None = None,
        priv_protocol: str | None = None,
        priv_passphrase: bytes | None = None,
    ) -> UsmUser:
        """Localise passphrases to ``engine_id`` (protocols are canonical names).

        The level follows what is given: priv needs auth (else it is ignored).
        """
        auth_key = priv_key = b""
        level = 0
        if auth_protocol and auth_passphrase is not None:
            hash_name = AUTH_PROTOCOLS[auth_protocol][0]
            auth_key = password_to_key(auth_passphrase, engine_id, hash_name)
            level = 1
            if priv_protocol and priv_passphrase is not None:
                priv_key = _priv_key(priv_passphrase, engine_id, hash_name, priv_protocol)
                level = 2
        return cls(
            name=name,
            engine_id=engine_id,
            level=level,
            auth_protocol=auth_protocol if level >= 1 else None,
            priv_protocol=priv_protocol if level == 2 else None,
            auth_key=auth_key,
            priv_key=priv_key,
        )


class UsmSecurity:
    """The USM user table and the incoming-message security check.

    Users are keyed by ``(engine_id, user_name)``; any number of both. ``process``
    authenticates and decrypts a decoded v3 ``Message`` in place.
    """

    def __init__(
        self, users: Iterable[V3User], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Localise every user's keys (CPU work, no I/O).

        Args:
            users: the configured USM users.
            clock: monotonic seconds, for the timeliness estimate.

        Raises:
            ValueError: two entries for the same (engine ID, user name).
        """
        self._clock = clock
        # engine ID -> [boots, latestReceivedEngineTime, local clock when received];
        # only ever written for configured engine IDs after a digest verified.
        self._engine_times: dict[bytes, list[float]] = {}
        self._users: dict[bytes, dict[bytes, UsmUser]] = {}
        for cfg in users:
            user = UsmUser.from_config(cfg)
            by_name = self._users.setdefault(user.engine_id, {})
            if user.name in by_name:
                raise ValueError(f"duplicate v3 user {cfg.user!r} for engine {cfg.engine_id}")
            by_name[user.name] = user

    def __len__(self) -> int:
        return sum(len(v) for v in self._users.values())

    def lookup(self, engine_id: bytes, user: bytes) -> UsmUser:
        """The user entry for ``(engine_id, user)``.

        Raises:
            UnknownSource: reason ``unknown_engine_id`` or ``unknown_user``.
        """
        by_name = self._users.get(engine_id)
        if by_name is None:
            if not engine_id:
                raise UnknownSource(
                    "empty engine ID (discovery); a trap receiver is never authoritative",
                    reason="unknown_engine_id",
                )
            raise UnknownSource(
                f"unknown engine ID 0x{engine_id.hex()}", reason="unknown_engine_id"
            )
        entry = by_name.get(user)
        if entry is None:
            raise UnknownSource(
                f"unknown user {user.decode(errors='replace')!r} for engine 0x{engine_id.hex()}",
                reason="unknown_user",
            )
        return entry

    def process(self, data: bytes, message: Message) -> UsmUser:
        """Check and open a decoded v3 ``message`` (``data`` is its whole datagram).

        On return ``message.pdu`` and the context fields are set.

        Raises:
            DecodeError: invalid msgFlags (``malformed``).
            UnknownSource: ``unknown_engine_id`` / ``unknown_user``.
            AuthenticationError: ``insufficient_security_level`` (below the user's
                level), ``unsupported_security_level`` (above what the user has
                keys for), ``auth_failed`` (wrong digest), ``not_in_time_window``
                (an authenticated message older than the engine's time window: a
                replay), ``decrypt_failed``.
        """
        usm = message.usm
        if usm is None:
            raise DecodeError("not an SNMPv3 message")
        flags = usm.flags
        if flags & 0x02 and not flags & 0x01:
            raise DecodeError("msgFlags: privacy without authentication")
        level = (flags & 0x01) + ((flags & 0x02) >> 1)
        user = self.lookup(usm.engine_id, usm.user)
        if level < user.level:
            raise AuthenticationError(
                f"message is {LEVELS[level]}, user requires {LEVELS[user.level]}",
                reason="insufficient_security_level",
            )
        if level > user.level:
            raise AuthenticationError(
                f"message is {LEVELS[level]}, user is configured {LEVELS[user.level]}",
                reason="unsupported_security_level",
            )
        if level >= 1:
            self._authenticate(data, usm.auth_offset, usm.auth_params, user)
            self._check_timeliness(usm.engine_id, usm.engine_boots, usm.engine_time)
        if level == 2:
            plain = self._decrypt(
                usm.scoped_data, usm.priv_params, usm.engine_boots, usm.engine_time, user
            )
            try:
                ctx_engine, ctx_name, pdu = decode_scoped_pdu(plain, allow_trailing=True)
            except DecodeError as exc:
                # The digest verified, so garbage here means a wrong priv key/protocol.
                raise AuthenticationError(
                    "decrypted ScopedPDU does not parse (wrong privacy key or protocol)",
                    reason="decrypt_failed",
                ) from exc
            usm.context_engine_id, usm.context_name = ctx_engine, ctx_name
            message.pdu = pdu
        return user

    def _check_timeliness(self, engine_id: bytes, boots: int, engine_time: int) -> None:
        """RFC 3414 §3.2 step 7b for an authenticated message from ``engine_id``.

        Accepts a first message (it sets the baseline), a greater boots, or equal
        boots with a time no older than the estimated engine time minus
        ``TIME_WINDOW``; the estimate moves forward on a newer (boots, time).
        """
        if not 0 <= boots < MAX_BOOTS or not 0 <= engine_time <= MAX_BOOTS:
            raise AuthenticationError(
                f"engine boots {boots} / time {engine_time} out of range",
                reason="not_in_time_window",
            )
        now = self._clock()
        seen = self._engine_times.get(engine_id)
        if seen is None or boots > seen[0]:
            self._engine_times[engine_id] = [boots, engine_time, now]
            return
        known_boots, latest, seen_at = seen
        if boots < known_boots:
            raise AuthenticationError(
                f"engine boots {boots} is below the {int(known_boots)} already seen (replay?)",
                reason="not_in_time_window",
            )
        estimated = latest + (now - seen_at)
        if engine_time < estimated - TIME_WINDOW:
            raise AuthenticationError(
                f"engine time {engine_time} is more than {TIME_WINDOW} s behind the "
                f"estimated {int(estimated)} (replay?)",
                reason="not_in_time_window",
            )
        if engine_time > latest:
            seen[1], seen[2] = engine_time, now

    @staticmethod
    def _authenticate(data: bytes, offset: int, received: bytes, user: UsmUser) -> None:
        verify_digest(data, offset, received, user)

    @staticmethod
    def _decrypt(
        ciphertext: bytes, salt: bytes, boots: int, engine_time: int, user: UsmUser
    ) -> bytes:
        return decrypt_scoped_pdu(ciphertext, salt, boots, engine_time, user)


# --------------------------------------------------------------------------- primitives
# Shared with the poller (``sensory.poll.snmp``), which is the sending side.


def verify_digest(data: bytes, offset: int, received: bytes, user: UsmUser) -> None:
    """Check the HMAC of a whole message whose auth parameters start at ``offset``.

    Raises:
        AuthenticationError: ``auth_failed`` (wrong length or wrong digest).
    """
    assert user.auth_protocol is not None  # level >= 1 implies an auth protocol
    hash_name, mac_len = AUTH_PROTOCOLS[user.auth_protocol]
    if len(received) != mac_len:
        raise AuthenticationError(
            f"authentication parameters are {len(received)} octets, "
            f"{user.auth_protocol} uses {mac_len}",
            reason="auth_failed",
        )
    whole = data[:offset] + bytes(mac_len) + data[offset + mac_len :]
    digest = hmac.digest(user.auth_key, whole, hash_name)[:mac_len]
    if not hmac.compare_digest(digest, received):
        raise AuthenticationError("wrong message digest", reason="auth_failed")


def sign_message(data: bytes, offset: int, user: UsmUser) -> bytes:
    """``data`` (auth parameters zeroed at ``offset``) with its HMAC put in place."""
    assert user.auth_protocol is not None
    hash_name, mac_len = AUTH_PROTOCOLS[user.auth_protocol]
    if data[offset : offset + mac_len] != bytes(mac_len):
        raise ValueError("authentication parameters are not zeroed at the offset")
    digest = hmac.digest(user.auth_key, data, hash_name)[:mac_len]
    return data[:offset] + digest + data[offset + mac_len :]


def encrypt_scoped_pdu(
    plaintext: bytes, salt: bytes, boots: int, engine_time: int, user: UsmUser
) -> bytes:
    """Encrypt an encoded ScopedPDU (RFC 3414 §8.1.1.2, RFC 3826 §3.1.3).

    ``salt`` is the 8-octet msgPrivacyParameters (the caller keeps it unique per
    key: boots + a counter for DES, a 64-bit counter for AES); ``boots`` and
    ``engine_time`` are the authoritative engine's, as sent in the message.
    """
    assert user.priv_protocol is not None
    if len(salt) != 8:
        raise ValueError("privacy parameters must be 8 octets")
    key = user.priv_key
    if PRIV_PROTOCOLS[user.priv_protocol][0] == "des":
        iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
        encryptor = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).encryptor()
        plaintext += bytes(-len(plaintext) % 8)
    else:
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
        encryptor = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def decrypt_scoped_pdu(
    ciphertext: bytes, salt: bytes, boots: int, engine_time: int, user: UsmUser
) -> bytes:
    """Decrypt msgData (the plaintext may carry DES padding after the ScopedPDU).

    Raises:
        AuthenticationError: ``decrypt_failed`` (bad salt, DES length, boots/time).
    """
    assert user.priv_protocol is not None  # level 2 implies a priv protocol
    cipher_name = PRIV_PROTOCOLS[user.priv_protocol][0]
    if len(salt) != 8:
        raise AuthenticationError(
            f"privacy parameters are {len(salt)} octets, expected 8", reason="decrypt_failed"
        )
    key = user.priv_key
    if cipher_name == "des":
        if not ciphertext or len(ciphertext) % 8:
            raise AuthenticationError(
                "DES ciphertext is not a multiple of 8 octets", reason="decrypt_failed"
            )
        iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
        decryptor = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).decryptor()
    else:
        if not 0 <= boots <= 0xFFFFFFFF or not 0 <= engine_time <= 0xFFFFFFFF:
            raise AuthenticationError("engine boots/time out of range", reason="decrypt_failed")
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
        decryptor = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
