"""The UDP ``TrapReceiver`` end to end with real net-snmp tools and raw sockets.

Covers every v3 auth/priv protocol, every bad-input case of the fixture README
(each rejected under its own reason, no event, and the receiver still serves a
good trap afterwards), informs, the source allow-list and relayed traps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.unit.sensory.trap._helpers import (
    ENGINE_ID,
    HAVE_SNMPTRAP,
    OTHER_ENGINE_ID,
    rejected,
    run_tool,
    running_receiver,
    snmp_env,
    trap_config,
    wait_until,
)

pytestmark = [
    pytest.mark.snmp,
    pytest.mark.skipif(not HAVE_SNMPTRAP, reason="net-snmp tools not installed"),
]

_WARM = ["360000", "1.3.6.1.6.3.1.1.5.2"]
_GOOD_V2C = ["snmptrap", "-v", "2c", "-c", "public", "-m", ""]


def _v3(user: str, level: str, auth: str | None, priv: str | None, **kw: str) -> list[str]:
    argv = ["snmptrap", "-v", "3", "-e", kw.get("engine", ENGINE_ID), "-u", user, "-l", level]
    if auth:
        argv += ["-a", auth, "-A", kw.get("auth_pass", "netcortex-auth-01")]
    if priv:
        argv += ["-x", priv, "-X", kw.get("priv_pass", "netcortex-priv-01")]
    return [*argv, "-m", ""]


async def _send(argv: list[str], port: int, tmp: Path, *trailer: str) -> int:
    return await run_tool([*argv, f"127.0.0.1:{port}", *(trailer or _WARM)], snmp_env(tmp))


@pytest.mark.parametrize(
    ("user", "auth", "priv"),
    [
        ("nc-sha1", "SHA", "AES"),
        ("nc-md5des", "MD5", "DES"),
        ("nc-sha512", "SHA-512", "AES-256"),
        ("nc-sha224", "SHA-224", "AES-192"),
        ("nc-sha384", "SHA-384", "AES"),
        ("nc-md5aes256", "MD5", "AES-256"),
        ("nc-sha1aes192", "SHA", "AES-192"),
        ("nc-cisco256", "SHA", "AES-256-C"),
        ("nc-cisco192", "MD5", "AES-192-C"),
    ],
)
async def test_v3_auth_priv_protocols(user: str, auth: str, priv: str, tmp_path: Path) -> None:
    """A v3 authPriv trap with each auth/priv protocol pair decodes to its event."""
    async with running_receiver() as (receiver, bus, _):
        argv = _v3(user, "authPriv", auth, priv)
        assert await _send(argv, receiver.bound_address[1], tmp_path) == 0
        (event,) = await bus.wait_for(1)
    assert event.event_class == "device_reboot"
    assert event.payload["user"] == user
    assert event.payload["security_level"] == "authPriv"


async def test_v3_lower_levels_and_second_engine(tmp_path: Path) -> None:
    """authNoPriv and noAuthNoPriv users, and one user name on two engine IDs, all work."""
    async with running_receiver() as (receiver, bus, registry):
        port = receiver.bound_address[1]
        codes = await asyncio.gather(
            _send(_v3("nc-authonly", "authNoPriv", "SHA-256", None), port, tmp_path),
            _send(_v3("nc-noauth", "noAuthNoPriv", None, None), port, tmp_path),
            _send(
                _v3("netcortex", "authPriv", "SHA-512", "AES-256", engine=OTHER_ENGINE_ID),
                port,
                tmp_path,
            ),
        )
        assert list(codes) == [0, 0, 0]
        events = await bus.wait_for(3)
    levels = sorted((e.payload["user"], e.payload["security_level"]) for e in events)
    assert levels == [
        ("nc-authonly", "authNoPriv"),
        ("nc-noauth", "noAuthNoPriv"),
        ("netcortex", "authPriv"),
    ]
    assert {e.payload["engine_id"] for e in events} == {ENGINE_ID, OTHER_ENGINE_ID}
    assert registry.counter("netcortex_rejected_total", "", ["source", "reason"]).total() == 0


_BAD = [
    pytest.param(
        ["snmptrap", "-v", "2c", "-c", "wrongcommunity", "-m", ""], "bad_community", id="community"
    ),
    pytest.param(
        _v3("netcortex", "authPriv", "SHA-256", "AES", auth_pass="wrong-auth-key-01"),
        "auth_failed",
        id="auth-passphrase",
    ),
    pytest.param(_v3("netcortex", "authPriv", "SHA", "AES"), "auth_failed", id="auth-protocol"),
    pytest.param(
        _v3("netcortex", "authPriv", "SHA-256", "AES", priv_pass="wrong-priv-key-01"),
        "decrypt_failed",
        id="priv-passphrase",
    ),
    pytest.param(
        _v3("netcortex", "authPriv", "SHA-256", "DES"), "decrypt_failed", id="priv-protocol"
    ),
    pytest.param(_v3("mallory", "authPriv", "SHA-256", "AES"), "unknown_user", id="user"),
    pytest.param(
        _v3("netcortex", "authPriv", "SHA-256", "AES", engine="0x80001f880472322d6c6162"),
        "unknown_engine_id",
        id="engine",
    ),
    pytest.param(
        _v3("netcortex", "authNoPriv", "SHA-256", None),
        "insufficient_security_level",
        id="level-below-user",
    ),
    pytest.param(
        _v3("nc-authonly", "authPriv", "SHA-256", "AES"),
        "unsupported_security_level",
        id="level-above-user",
    ),
]


@pytest.mark.parametrize(("argv", "reason"), _BAD)
async def test_bad_snmptrap_rejected_then_good_served(
    argv: list[str], reason: str, tmp_path: Path
) -> None:
    """A bad trap is counted under its reason, logged, yields no event; a good one still works."""
    async with running_receiver() as (receiver, bus, registry):
        port = receiver.bound_address[1]
        with capture_logs() as logs:
            assert await _send(argv, port, tmp_path) == 0
            await wait_until(lambda: rejected(registry, reason) == 1)
        assert bus.events == []
        (line,) = [entry for entry in logs if entry["event"] == "trap_rejected"]
        assert line["reason"] == reason
        assert line["agent"] == "127.0.0.1"
        assert line["log_level"] == "warning"
        assert "netcortex-" not in repr(line)  # no passphrase in the log line
        assert await _send(_GOOD_V2C, port, tmp_path) == 0
        (event,) = await bus.wait_for(1)
        assert event.event_class == "device_reboot"


async def test_v2c_inform_is_answered(tmp_path: Path) -> None:
    """``snmpinform`` gets its Response (exit 0) and the inform becomes an event."""
    async with running_receiver() as (receiver, bus, registry):
        argv = ["snmpinform", "-v", "2c", "-c", "public", "-m", "", "-r", "0", "-t", "3"]
        code = await _send(
            argv,
            receiver.bound_address[1],
            tmp_path,
            "360000",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.7",
            "i",
            "7",
        )
        assert code == 0
        (event,) = await bus.wait_for(1)
    assert event.event_class == "link_down"
    assert event.payload["pdu_type"] == "inform"
    assert event.interface == "ifIndex=7"
    assert registry.counter("netcortex_trap_informs_answered_total", "").value() == 1


async def test_v3_inform_rejected_with_clear_reason(tmp_path: Path) -> None:
    """A v3 inform (receiver would be authoritative) is rejected, counted and not answered."""
    async with running_receiver() as (receiver, bus, registry):
        argv = [
            "snmpinform",
            *_v3("netcortex", "authPriv", "SHA-256", "AES")[1:],
            "-r",
            "0",
            "-t",
            "0.5",
        ]
        code = await _send(argv, receiver.bound_address[1], tmp_path)
        assert code != 0  # no Response: the sender times out
        await wait_until(lambda: rejected(registry, "v3_inform_unsupported") == 1)
    assert bus.events == []


async def test_source_allow_list(tmp_path: Path) -> None:
    """Only allowed sources are decoded; others are rejected as ``unknown_source``."""
    config = trap_config(allowed_sources=["127.0.0.2/32", "10.0.0.0/8"])
    async with running_receiver(config) as (receiver, bus, registry):
        port = receiver.bound_address[1]
        env_tmp = tmp_path
        assert await _send([*_GOOD_V2C, "--clientaddr=127.0.0.1"], port, env_tmp) == 0
        await wait_until(lambda: rejected(registry, "unknown_source") == 1)
        assert await _send([*_GOOD_V2C, "--clientaddr=127.0.0.2"], port, env_tmp) == 0
        (event,) = await bus.wait_for(1)
    assert event.agent == "127.0.0.2"
    assert event.payload["udp_source"] == "127.0.0.2"


@pytest.mark.parametrize("honour", [True, False])
async def test_relayed_trap_address(honour: bool, tmp_path: Path) -> None:
    """snmpTrapAddress.0 names the agent only when ``honour_trap_address`` is set."""
    async with running_receiver(trap_config(honour_trap_address=honour)) as (receiver, bus, _):
        code = await _send(
            [*_GOOD_V2C, "--clientaddr=127.0.0.5"],
            receiver.bound_address[1],
            tmp_path,
            "360000",
            "1.3.6.1.6.3.1.1.5.4",
            "1.3.6.1.2.1.2.2.1.1.9",
            "i",
            "9",
            "1.3.6.1.6.3.18.1.3.0",
            "a",
            "192.0.2.12",
        )
        assert code == 0
        (event,) = await bus.wait_for(1)
    assert event.event_class == "link_up"
    assert event.payload["trap_address"] == "192.0.2.12"
    assert event.payload["udp_source"] == "127.0.0.5"
    assert event.agent == ("192.0.2.12" if honour else "127.0.0.5")
    assert event.target == f"{event.agent}|ifIndex=9"


async def test_many_concurrent_senders(tmp_path: Path) -> None:
    """Thirty concurrent snmptrap processes (v2c and v3) all arrive as events."""
    async with running_receiver() as (receiver, bus, _):
        port = receiver.bound_address[1]
        v3 = _v3("netcortex", "authPriv", "SHA-256", "AES")
        argvs = [_GOOD_V2C if i % 2 else v3 for i in range(30)]
        codes = await asyncio.gather(*(_send(a, port, tmp_path) for a in argvs))
        assert set(codes) == {0}
        events = await bus.wait_for(30)
    assert len({e.id for e in events}) == 30


async def test_v3_replay_outside_time_window_rejected(tmp_path: Path) -> None:
    """snmptrap -Z: an older time in the same boots is ``not_in_time_window``; newer boots pass."""
    async with running_receiver() as (receiver, bus, registry):
        port = receiver.bound_address[1]
        v3 = _v3("netcortex", "authPriv", "SHA-256", "AES")
        assert await _send([*v3, "-Z", "5,1000"], port, tmp_path) == 0
        await bus.wait_for(1)
        with capture_logs() as logs:
            assert await _send([*v3, "-Z", "5,800"], port, tmp_path) == 0
            await wait_until(lambda: rejected(registry, "not_in_time_window") == 1)
        (line,) = [e for e in logs if e["event"] == "trap_rejected"]
        assert line["reason"] == "not_in_time_window"
        assert await _send([*v3, "-Z", "5,900"], port, tmp_path) == 0  # within 150 s
        assert await _send([*v3, "-Z", "6,1"], port, tmp_path) == 0  # the sender rebooted
        events = await bus.wait_for(3)
    assert len(events) == 3
    assert rejected(registry, "not_in_time_window") == 1
