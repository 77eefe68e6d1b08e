"""SNMPv3 USM: key localisation vectors, per-reason rejections, user table behaviour."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from netcortex.config import V3User
from netcortex.errors import AuthenticationError, DecodeError, UnknownSource
from netcortex.sensory.trap import ber
from netcortex.sensory.trap.usm import UsmSecurity, UsmUser, password_to_key
from tests.unit.sensory.trap import _seeds
from tests.unit.sensory.trap._helpers import ENGINE_ID, v3_users


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
