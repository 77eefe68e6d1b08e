"""SNMPv3 USM: key localisation vectors, per-reason rejections, user table behaviour."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from netcortex.config import V3User
from netcortex.errors import AuthenticationError, DecodeError, UnknownSource
from netcortex.sensory.trap import ber
from netcortex.sensory.trap.usm import UsmSecurity, UsmUser, password_to_key
from tests.unit.sensory.trap import _seeds
from tests.unit.sensory.trap._helpers import (
    ENGINE_ID,
    OTHER_ENGINE_ID,
    WARM_START,
    encode_v3_trap,
    v3_user,
    v3_users,
)


class TestKeys:
    """RFC 3414 A.3 key localisation and the AES key extensions."""

    def test_rfc3414_md5_vector(self) -> None:
        """MD5 password-to-key matches RFC 3414 A.3.1."""
        key = password_to_key(b"maplesyrup", bytes(11) + b"\x02", "md5")
        assert key.hex() == "526f5eed9fcce26f8964c2930787d82b"

    def test_rfc3414_sha_vector(self) -> None:
        """SHA password-to-key matches RFC 3414 A.3.2."""
        key = password_to_key(b"maplesyrup", bytes(11) + b"\x02", "sha1")
        assert key.hex() == "6695febc9288e36282235fc7151f128497b38f3f"

    def test_key_lengths_and_extensions(self) -> None:
        """Priv keys have the cipher's length; Blumenthal and Reeder extensions differ."""

        def user(auth: str, priv: str) -> UsmUser:
            return UsmUser.from_config(
                V3User(
                    user="u",
                    engine_id=ENGINE_ID,
                    auth_protocol=auth,
                    auth_key=SecretStr("netcortex-auth-01"),
                    priv_protocol=priv,
                    priv_key=SecretStr("netcortex-priv-01"),
                )
            )

        blumenthal, reeder = user("SHA", "AES-256"), user("SHA", "AES-256-C")
        assert len(blumenthal.priv_key) == len(reeder.priv_key) == 32
        assert blumenthal.priv_key[:20] == reeder.priv_key[:20]  # same localised key first
        assert blumenthal.priv_key[20:] != reeder.priv_key[20:]  # different extension
        assert len(user("MD5", "DES").priv_key) == 16
        assert len(user("SHA-512", "AES-192").priv_key) == 24
        assert repr(blumenthal.priv_key) not in repr(blumenthal)  # keys never printed
        assert repr(blumenthal.auth_key) not in repr(blumenthal)


@pytest.fixture(scope="module")
def usm() -> UsmSecurity:
    """The test user table (keys localised once for the module)."""
    return UsmSecurity(v3_users())


class TestProcess:
    """Opening captured net-snmp v3 datagrams."""

    def test_auth_priv_aes(self, usm: UsmSecurity) -> None:
        """SHA-256 + AES-128: digest verified, ScopedPDU decrypted."""
        msg = ber.decode_message(_seeds.V3_AES_LINKDOWN)
        user = usm.process(_seeds.V3_AES_LINKDOWN, msg)
        assert user.name == b"netcortex"
        assert msg.pdu is not None
        assert msg.pdu.varbinds[1].value == "1.3.6.1.6.3.1.1.5.3"

    def test_auth_priv_des(self, usm: UsmSecurity) -> None:
        """MD5 + DES (TripleDES with one key thrice) decrypts, padding ignored."""
        msg = ber.decode_message(_seeds.V3_MD5DES)
        usm.process(_seeds.V3_MD5DES, msg)
        assert msg.pdu is not None
        assert msg.pdu.varbinds[1].value == "1.3.6.1.6.3.1.1.5.2"

    def test_tampered_message_fails_auth(self, usm: UsmSecurity) -> None:
        """One changed octet in the encrypted part fails the digest check."""
        data = bytearray(_seeds.V3_AES_LINKDOWN)
        data[-1] ^= 0x01
        msg = ber.decode_message(bytes(data))
        with pytest.raises(AuthenticationError) as info:
            usm.process(bytes(data), msg)
        assert info.value.reason == "auth_failed"

    def test_unknown_engine_and_user(self) -> None:
        """Missing engine and missing user are distinct reasons."""
        only_other = UsmSecurity([u for u in v3_users() if u.user == "nc-noauth"])
        msg = ber.decode_message(_seeds.V3_AUTHONLY)
        with pytest.raises(UnknownSource) as info:
            only_other.process(_seeds.V3_AUTHONLY, msg)
        assert info.value.reason == "unknown_user"
        with pytest.raises(UnknownSource) as info:
            UsmSecurity([]).process(_seeds.V3_AUTHONLY, msg)
        assert info.value.reason == "unknown_engine_id"
        with pytest.raises(UnknownSource, match="discovery"):
            only_other.lookup(b"", b"netcortex")

    def test_priv_without_auth_flag_is_malformed(self, usm: UsmSecurity) -> None:
        """msgFlags with priv but no auth is an invalid message."""
        msg = ber.decode_message(_seeds.V3_AES_LINKDOWN)
        assert msg.usm is not None
        msg.usm.flags = 0x02
        with pytest.raises(DecodeError):
            usm.process(_seeds.V3_AES_LINKDOWN, msg)

    def test_duplicate_user_rejected(self) -> None:
        """Two entries for one (engine ID, user) are a configuration error."""
        users = v3_users()
        with pytest.raises(ValueError, match="duplicate"):
            UsmSecurity([users[0], users[0]])
        assert len(UsmSecurity(users)) == len(users)


class _Clock:
    """A monotonic clock the test moves by hand (the USM's time seam)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _open(usm: UsmSecurity, data: bytes) -> ber.Message:
    msg = ber.decode_message(data)
    usm.process(data, msg)
    return msg


def _reason(usm: UsmSecurity, data: bytes) -> str:
    with pytest.raises(AuthenticationError) as info:
        _open(usm, data)
    return info.value.reason


class TestTimeliness:
    """RFC 3414 §3.2 step 7b as a non-authoritative receiver of notifications."""

    def test_crafted_packets_open(self) -> None:
        """The test encoder's authPriv (AES, DES) and authNoPriv packets verify and decrypt."""
        usm = UsmSecurity(v3_users())
        for name in ("netcortex", "nc-md5des", "nc-cisco256", "nc-authonly"):
            msg = _open(usm, encode_v3_trap(v3_user(name), boots=3, engine_time=500))
            assert msg.pdu is not None
            assert msg.pdu.varbinds == list(WARM_START)

    def test_replay_older_than_window_rejected(self) -> None:
        """Same boots and a time more than 150 s behind the estimate is ``not_in_time_window``."""
        usm = UsmSecurity(v3_users(), clock=_Clock())
        user = v3_user("netcortex")
        _open(usm, encode_v3_trap(user, boots=5, engine_time=1000))  # baseline
        assert _reason(usm, encode_v3_trap(user, boots=5, engine_time=849)) == (
            "not_in_time_window"
        )
        _open(usm, encode_v3_trap(user, boots=5, engine_time=850))  # exactly at the edge

    def test_estimate_advances_with_local_time(self) -> None:
        """The engine's clock is estimated forward by the local time elapsed since the baseline."""
        clock = _Clock()
        usm = UsmSecurity(v3_users(), clock=clock)
        user = v3_user("nc-authonly")
        old = encode_v3_trap(user, boots=5, engine_time=1000)
        _open(usm, old)
        clock.now += 151
        assert _reason(usm, old) == "not_in_time_window"  # the same packet, replayed later
        _open(usm, encode_v3_trap(user, boots=5, engine_time=1001))
        clock.now += 1000
        assert _reason(usm, encode_v3_trap(user, boots=5, engine_time=1850)) == (
            "not_in_time_window"
        )
        _open(usm, encode_v3_trap(user, boots=5, engine_time=1900))

    def test_newer_and_older_boots(self) -> None:
        """A greater boots (a reboot) is accepted and resets the estimate; a lower one is not."""
        clock = _Clock()
        usm = UsmSecurity(v3_users(), clock=clock)
        user = v3_user("nc-md5des")
        _open(usm, encode_v3_trap(user, boots=5, engine_time=100_000))
        _open(usm, encode_v3_trap(user, boots=6, engine_time=3))
        assert _reason(usm, encode_v3_trap(user, boots=5, engine_time=100_010)) == (
            "not_in_time_window"
        )
        _open(usm, encode_v3_trap(user, boots=6, engine_time=0))  # within 150 s of 3

    def test_boots_at_maximum_and_out_of_range(self) -> None:
        """boots 2147483647 (the engine must be re-keyed) or negative values are rejected."""
        usm = UsmSecurity(v3_users())
        user = v3_user("nc-authonly")
        for boots, engine_time in ((2147483647, 5), (-1, 5), (1, -1)):
            data = encode_v3_trap(user, boots=boots, engine_time=engine_time)
            assert _reason(usm, data) == "not_in_time_window"

    def test_per_engine_and_only_authenticated(self) -> None:
        """Each engine ID has its own baseline; noAuthNoPriv and forged messages never touch it."""
        usm = UsmSecurity(v3_users(), clock=_Clock())
        _open(usm, encode_v3_trap(v3_user("netcortex"), boots=9, engine_time=10_000))
        # Another engine starts its own baseline far behind the first one.
        _open(usm, encode_v3_trap(v3_user("netcortex", OTHER_ENGINE_ID), boots=1, engine_time=1))
        # noAuthNoPriv carries no proof, so it is neither checked nor recorded.
        _open(usm, encode_v3_trap(v3_user("nc-noauth"), boots=1, engine_time=1))
        _open(usm, encode_v3_trap(v3_user("nc-noauth"), boots=99, engine_time=1))
        # A forged message with a huge boots fails its digest and moves nothing.
        forged = bytearray(encode_v3_trap(v3_user("nc-authonly"), boots=50, engine_time=1))
        forged[-1] ^= 1
        assert _reason(usm, bytes(forged)) == "auth_failed"
        _open(usm, encode_v3_trap(v3_user("nc-authonly"), boots=9, engine_time=10_000))
        assert len(usm._engine_times) == 2  # bounded by the configured engine IDs
