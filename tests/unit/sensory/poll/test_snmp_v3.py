"""SnmpClient over SNMPv3 (USM) against a real net-snmp ``snmpd`` with v3 users.

The agent is the authority on the wire format: engine discovery, localised keys,
HMAC-SHA/SHA-256 digests and AES-128 encryption either work against it or the
agent drops or reports the request. Wrong keys must end in ``PollAuthError``
(never a bare timeout) and no key may appear in an error, a repr or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from netcortex.config import V3User
from netcortex.errors import PollAuthError
from netcortex.sensory.poll.snmp import PollTarget, SnmpClient, UsmCredentials
from netcortex.sensory.trap.ber import decode_message
from tests.servers import SnmpdServer, SnmpdUser, snmpd_binary

SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"

PRIV_USER = SnmpdUser("nc-priv", "SHA-256", "auth-pass-0001", "AES", "priv-pass-0001")
AUTH_USER = SnmpdUser("nc-auth", "SHA", "auth-pass-0002")
MD5_DES_USER = SnmpdUser("nc-md5des", "MD5", "auth-pass-0003", "DES", "priv-pass-0003")
USERS = (PRIV_USER, AUTH_USER, MD5_DES_USER)


def make_server(work_dir: Path) -> SnmpdServer:
    if snmpd_binary() is None:
        pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
    return SnmpdServer(work_dir=work_dir, v3_users=USERS)


@pytest.fixture(scope="module")
def snmpd_v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdServer]:
    """A running ``snmpd`` with the v3 users above (and the default v2c community)."""
    server = make_server(tmp_path_factory.mktemp("snmpd-v3"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    async with SnmpClient() as c:
        yield c


def creds(user: SnmpdUser, **override: str) -> UsmCredentials:
    auth_key = override.get("auth_key", user.auth_key)
    priv_key = override.get("priv_key", user.priv_key)
    return UsmCredentials(
        user.name,
        user.auth,
        SecretStr(auth_key),
        user.priv,
        SecretStr(priv_key) if priv_key is not None else None,
    )


def v3_target(server: SnmpdServer, usm: UsmCredentials, **kw: float) -> PollTarget:
    return PollTarget(
        server.host,
        server.port,
        timeout=kw.get("timeout", 1.0),
        retries=int(kw.get("retries", 1)),
        usm=usm,
    )


@pytest.mark.snmp
@pytest.mark.parametrize("user", USERS, ids=lambda u: u.name)
async def test_v3_get_discovers_engine_and_reads(
    snmpd_v3: SnmpdServer, client: SnmpClient, user: SnmpdUser
) -> None:
    """authPriv SHA-256/AES, authNoPriv SHA and authPriv MD5/DES each GET sysName;
    the first request discovers the agent's engine ID (net-snmp's 0x80 format) and
    later requests reuse it."""
    target = v3_target(snmpd_v3, creds(user))
    assert client.engine_id(target) is None
    (vb,) = await client.get(target, [SYS_NAME])
    assert vb.value == snmpd_v3.sys_name.encode()
    engine_id = client.engine_id(target)
    assert engine_id is not None
    assert engine_id[0] & 0x80
    assert len(engine_id) >= 5
    (up,) = await client.get(target, [SYS_UPTIME])
    assert up.type == "TimeTicks"
    assert client.engine_id(target) == engine_id
    assert client.in_flight == 0


@pytest.mark.snmp
async def test_v3_walk_equals_v2c_walk(snmpd_v3: SnmpdServer, client: SnmpClient) -> None:
    """A GETBULK walk of ifDescr over authPriv v3 equals the v2c walk, and concurrent
    v3 requests share one discovery."""
    v2c = PollTarget(snmpd_v3.host, snmpd_v3.port, community=SecretStr(snmpd_v3.community))
    v3 = v3_target(snmpd_v3, creds(PRIV_USER))
    expected = await client.bulk_walk(v2c, IF_DESCR)
    assert expected
    walks = await asyncio.gather(
        client.bulk_walk(v3, IF_DESCR),
        client.bulk_walk(v3, IF_DESCR, max_repetitions=1),
        client.bulk_walk(v3_target(snmpd_v3, creds(AUTH_USER)), IF_DESCR, max_repetitions=2),
    )
    assert list(walks) == [expected, expected, expected]


@pytest.mark.snmp
async def test_wrong_auth_key_is_poll_auth_error(snmpd_v3: SnmpdServer, client: SnmpClient) -> None:
    """A wrong authentication passphrase: the agent's usmStatsWrongDigests Report
    becomes PollAuthError(wrong_digest) at once (no timeout); no key is shown."""
    bad = "not-the-auth-pass-9"
    target = v3_target(snmpd_v3, creds(PRIV_USER, auth_key=bad), timeout=5.0)
    with structlog.testing.capture_logs() as logs, pytest.raises(PollAuthError) as info:
        await asyncio.wait_for(client.get(target, [SYS_NAME]), 4.0)
    assert info.value.reason == "wrong_digest"
    assert info.value.target == f"127.0.0.1:{snmpd_v3.port}"
    assert "authentication key" in str(info.value)
    for text in (str(info.value), repr(target), repr(target.usm), repr(logs)):
        assert bad not in text
        assert PRIV_USER.priv_key not in text  # type: ignore[operator]


@pytest.mark.snmp
async def test_wrong_priv_key_is_poll_auth_error(snmpd_v3: SnmpdServer, client: SnmpClient) -> None:
    """A wrong privacy passphrase (right auth key): net-snmp drops what it cannot
    decrypt, the authNoPriv probe proves the agent alive and the auth key right,
    and the poll fails with PollAuthError(decryption_error), not PollTimeout."""
    bad = "not-the-priv-pass-9"
    target = v3_target(snmpd_v3, creds(PRIV_USER, priv_key=bad), timeout=0.3, retries=0)
    with structlog.testing.capture_logs() as logs, pytest.raises(PollAuthError) as info:
        await client.get(target, [SYS_NAME])
    assert info.value.reason == "decryption_error"
    assert "privacy key" in str(info.value)
    for text in (str(info.value), repr(target), repr(logs)):
        assert bad not in text
        assert PRIV_USER.auth_key not in text
    assert client.in_flight == 0


@pytest.mark.snmp
async def test_unknown_user_is_poll_auth_error(snmpd_v3: SnmpdServer, client: SnmpClient) -> None:
    """A user the agent does not have: usmStatsUnknownUserNames → unknown_user."""
    usm = UsmCredentials("nobody-here", "SHA", SecretStr("whatever-0001"))
    with pytest.raises(PollAuthError) as info:
        await client.get(v3_target(snmpd_v3, usm), [SYS_NAME])
    assert info.value.reason == "unknown_user"


@pytest.mark.snmp
async def test_agent_restart_with_new_engine_id_rediscovers(
    tmp_path: Path, client: SnmpClient
) -> None:
    """This snmpd keeps no persistent state (``-C``), so a restart gives it a new
    random engine ID: the cached engine earns an usmStatsUnknownEngineIDs Report,
    the client discovers again once and the request succeeds."""
    server = make_server(tmp_path)
    server.start()
    try:
        target = v3_target(server, creds(PRIV_USER))
        await client.get(target, [SYS_NAME])
        engine_id = client.engine_id(target)
        server.stop()
        server.start()
        (vb,) = await client.get(target, [SYS_NAME])
        assert vb.value == server.sys_name.encode()
        assert client.engine_id(target) not in (None, engine_id)
    finally:
        server.cleanup()


@pytest.mark.snmp
@pytest.mark.parametrize("skew", [(0, 1000), (1, 0)], ids=["time_ahead", "boots_ahead"])
async def test_not_in_time_window_resyncs_once(
    snmpd_v3: SnmpdServer, client: SnmpClient, skew: tuple[int, int]
) -> None:
    """With the cached engine clock skewed (what a drifting or rebooted agent looks
    like) the agent answers an authenticated usmStatsNotInTimeWindows Report; the
    client takes boots/time from it and the retried request succeeds."""
    target = v3_target(snmpd_v3, creds(AUTH_USER))
    await client.get(target, [SYS_NAME])
    # White-box: skew the cached engine (snmpd cannot be made to drift on demand).
    engine = client._engines[(target.host, target.port)]
    true_boots, true_time = engine.now()
    engine.boots += skew[0]
    engine.engine_time += skew[1]
    (vb,) = await client.get(target, [SYS_NAME])
    assert vb.value == snmpd_v3.sys_name.encode()
    boots, now = engine.now()
    assert boots == true_boots
    assert true_time <= now <= true_time + 5


class TamperingRelay:
    """A UDP relay between the client and snmpd that corrupts the digest of the first
    ``tamper`` authenticated answers (what an on-path forger can do)."""

    def __init__(self, upstream: tuple[str, int], tamper: int) -> None:
        self.upstream = upstream
        self.tamper = tamper
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.front.setblocking(False)
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.back.setblocking(False)
        self.port: int = self.front.getsockname()[1]
        self.client: tuple[str, int] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> TamperingRelay:
        self.tasks = [asyncio.create_task(self._forward()), asyncio.create_task(self._back())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.front.close()
        self.back.close()

    async def _forward(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, self.client = await loop.sock_recvfrom(self.front, 65535)
            await loop.sock_sendto(self.back, data, self.upstream)

    async def _back(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, _ = await loop.sock_recvfrom(self.back, 65535)
            usm = decode_message(data).usm
            if usm is not None and usm.flags & 0x01 and self.tamper > 0:
                self.tamper -= 1
                at = usm.auth_offset
                data = data[:at] + bytes((data[at] ^ 0xFF,)) + data[at + 1 :]
            assert self.client is not None
            await loop.sock_sendto(self.front, data, self.client)


@pytest.mark.snmp
async def test_answer_with_forged_digest_is_ignored(
    snmpd_v3: SnmpdServer, client: SnmpClient
) -> None:
    """An authenticated answer whose digest does not verify is dropped and counted;
    the re-sent request's genuine answer completes the GET."""
    async with TamperingRelay((snmpd_v3.host, snmpd_v3.port), tamper=1) as relay:
        target = PollTarget("127.0.0.1", relay.port, timeout=0.3, retries=2, usm=creds(PRIV_USER))
        (vb,) = await client.get(target, [SYS_NAME])
    assert vb.value == snmpd_v3.sys_name.encode()
    assert relay.tamper == 0
    assert client.ignored == {"wrong_digest": 1}


def test_credentials_validate_and_hide_keys() -> None:
    """Unknown protocols, priv without auth and short keys are refused; keys stay out
    of repr; from_config takes a trap.v3_users entry."""
    usm = creds(PRIV_USER)
    assert "pass" not in repr(usm)
    assert "pass" not in repr(PollTarget("192.0.2.1", usm=usm))
    assert usm.level == 2
    assert creds(AUTH_USER).level == 1
    for bad in (
        {"auth_protocol": "SHA-1024", "auth_key": SecretStr("x" * 8)},
        {"priv_protocol": "AES", "priv_key": SecretStr("x" * 8)},
        {"auth_protocol": "SHA", "auth_key": SecretStr("short")},
        {"auth_protocol": "SHA"},
    ):
        with pytest.raises(ValueError, match=r"unknown|needs|at least|together"):
            UsmCredentials("u", **bad)
    cfg = V3User(
        user="nc-priv",
        engine_id="0x80001f8804aabbccdd",
        auth_protocol="sha256",
        auth_key="auth-pass-0001",  # type: ignore[arg-type]
        priv_protocol="aes",
        priv_key="priv-pass-0001",  # type: ignore[arg-type]
    )
    assert UsmCredentials.from_config(cfg) == usm
