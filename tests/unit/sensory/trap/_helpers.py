"""Test helpers for the trap receiver: a recording bus, config and snmptrap runners.

``RecordingBus`` satisfies ``contracts.bus.EventBus``'s ``publish`` (the only method
the receiver calls) and decodes what it gets with the real codec, so the tests see
exactly what a real bus would carry. It is a seam fake, not a mock of internals.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shlex
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import SecretStr

from netcortex.config import TrapConfig, V3User
from netcortex.contracts.bus import Subscription
from netcortex.contracts.codec import decode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.metrics import Registry
from netcortex.sensory.trap import TrapReceiver, ber
from netcortex.sensory.trap.ber import VarBind
from netcortex.sensory.trap.usm import AUTH_PROTOCOLS, PRIV_PROTOCOLS, UsmUser

ENGINE_ID = "0x80001f880472312d6c6162"
OTHER_ENGINE_ID = "0x80001f8804723220202020"  # a second device
AUTH_PASS = "netcortex-auth-01"
PRIV_PASS = "netcortex-priv-01"
# A developer running a subset without net-snmp may skip these tests; CI never
# does (`make test` installs the tools, and under CI a missing tool must fail).
HAVE_SNMPTRAP = bool(os.environ.get("CI")) or (
    shutil.which("snmptrap") is not None and shutil.which("snmpinform") is not None
)


class RecordingBus:
    """Keeps every published event (decoded with the real codec); tests wait on it."""

    def __init__(self) -> None:
        self.events: list[SensoryEvent] = []
        self.published: list[tuple[str, bytes, str | None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Record one publish and wake waiters."""
        self.published.append((subject, data, msg_id))
        self.events.append(decode_event(data))
        self._changed.set()

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        """Not used by the receiver."""
        raise NotImplementedError

    async def wait_for(self, count: int, within: float = 5.0) -> list[SensoryEvent]:
        """Return once at least ``count`` events were published; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.events)


def v3_users() -> list[V3User]:
    """Every USM user the tests send as (the README's users plus the other protocols)."""

    def user(name: str, auth: str | None, priv: str | None, engine: str = ENGINE_ID) -> V3User:
        return V3User(
            user=name,
            engine_id=engine,
            auth_protocol=auth,
            auth_key=SecretStr(AUTH_PASS) if auth else None,
            priv_protocol=priv,
            priv_key=SecretStr(PRIV_PASS) if priv else None,
        )

    return [
        user("netcortex", "SHA-256", "AES"),
        user("nc-sha1", "SHA", "AES"),
        user("nc-md5des", "MD5", "DES"),
        user("nc-sha512", "SHA-512", "AES-256"),
        user("nc-sha224", "SHA-224", "AES-192"),
        user("nc-sha384", "SHA-384", "AES"),
        user("nc-md5aes256", "MD5", "AES-256"),  # Blumenthal extension 16 → 32 octets
        user("nc-sha1aes192", "SHA", "AES-192"),  # Blumenthal extension 20 → 24 octets
        user("nc-cisco256", "SHA", "AES-256-C"),  # Reeder extension
        user("nc-cisco192", "MD5", "AES-192-C"),
        user("nc-authonly", "SHA-256", None),
        user("nc-noauth", None, None),
        user("netcortex", "SHA-512", "AES-256", engine=OTHER_ENGINE_ID),
    ]


def trap_config(**overrides: Any) -> TrapConfig:
    """A receiver config on 127.0.0.1, port 0, with the test users."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "v3_users": v3_users()}
    values.update(overrides)
    return TrapConfig(**values)


@asynccontextmanager
async def running_receiver(
    config: TrapConfig | None = None, **kwargs: Any
) -> AsyncIterator[tuple[TrapReceiver, RecordingBus, Registry]]:
    """A started ``TrapReceiver`` on a free port with a ``RecordingBus``."""
    bus = RecordingBus()
    registry = Registry()
    receiver = TrapReceiver(config or trap_config(), bus, registry, **kwargs)
    await receiver.start()
    try:
        yield receiver, bus, registry
    finally:
        await receiver.close()


def rejected(registry: Registry, reason: str) -> float:
    """``netcortex_rejected_total{source="snmp.trap", reason}``."""
    return registry.counter(
        "netcortex_rejected_total", "inputs rejected by a receiver", ["source", "reason"]
    ).value(source="snmp.trap", reason=reason)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait, bounded, until ``predicate`` holds (counters have no event to await, so poll)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - a bounded poll of a plain counter
            await asyncio.sleep(0.005)


def snmp_env(tmp: Path) -> dict[str, str]:
    """An environment that keeps net-snmp away from user config and shared state."""
    env = dict(os.environ)
    env["SNMPCONFPATH"] = str(tmp)
    env["SNMP_PERSISTENT_DIR"] = str(tmp)
    env["MIBS"] = ""
    return env


def rewrite(command: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """Split a fixture command line and point it at ``127.0.0.1:<port>``."""
    argv = shlex.split(command)
    argv = [f"127.0.0.1:{port}" if a == "127.0.0.1:1162" else a for a in argv]
    return [argv[0], *extra, *argv[1:]]


async def run_tool(argv: Sequence[str], env: dict[str, str], within: float = 10.0) -> int:
    """Run a net-snmp command; return its exit code (output is discarded)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(within):
        _, err = await proc.communicate()
    if proc.returncode:
        print(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace')}")
    return proc.returncode or 0


def send_raw(port: int, payload: bytes, source: str = "127.0.0.1") -> None:
    """Send one UDP datagram to the receiver from ``source``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(payload, ("127.0.0.1", port))


WARM_START = (
    VarBind("1.3.6.1.2.1.1.3.0", "TimeTicks", 360000),
    VarBind("1.3.6.1.6.3.1.1.4.1.0", "ObjectIdentifier", "1.3.6.1.6.3.1.1.5.2"),
)


def encode_v3_trap(
    user: V3User,
    *,
    boots: int,
    engine_time: int,
    varbinds: Sequence[VarBind] = WARM_START,
    salt: bytes = b"\x00\x00\x00\x01\x02\x03\x04\x05",
    flags: int | None = None,
) -> bytes:
    """An SNMPv3 SNMPv2-Trap as ``user`` would send it (the sender is authoritative).

    Built independently of the receiver's USM code path (only key localisation is
    shared, checked against RFC 3414 A.3 vectors): digest over the whole message
    with the auth parameters zeroed, AES IV = boots||time||salt, DES IV = pre-IV
    XOR salt with the plaintext padded to 8 octets. ``flags`` overrides msgFlags.
    """
    local = UsmUser.from_config(user)
    level = local.level if flags is None else (flags & 1) + ((flags & 2) >> 1)
    msg_flags = (flags if flags is not None else (0, 1, 3)[local.level]).to_bytes(1, "big")
    mac_len = AUTH_PROTOCOLS[local.auth_protocol][1] if local.auth_protocol else 0
    pdu = ber.encode_tlv(
        0xA7,
        ber.encode_value("Integer", 1234)
        + ber.encode_value("Integer", 0)
        + ber.encode_value("Integer", 0)
        + ber.encode_varbinds(list(varbinds)),
    )
    scoped = ber.encode_tlv(
        0x30, ber.encode_tlv(0x04, local.engine_id) + ber.encode_tlv(0x04, b"") + pdu
    )
    priv_params = b""
    if level == 2:
        assert local.priv_protocol is not None
        priv_params = salt
        key = local.priv_key
        if PRIV_PROTOCOLS[local.priv_protocol][0] == "des":
            iv = bytes(a ^ b for a, b in zip(key[8:16], salt, strict=True))
            enc = Cipher(TripleDES(key[:8] * 3), modes.CBC(iv)).encryptor()
            padded = scoped + bytes(-len(scoped) % 8)
        else:
            iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt
            enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
            padded = scoped
        msg_data = ber.encode_tlv(0x04, enc.update(padded) + enc.finalize())
    else:
        msg_data = scoped
    usm_params = ber.encode_tlv(
        0x30,
        ber.encode_tlv(0x04, local.engine_id)
        + ber.encode_value("Integer", boots)
        + ber.encode_value("Integer", engine_time)
        + ber.encode_tlv(0x04, local.name)
        + ber.encode_tlv(0x04, bytes(mac_len))
        + ber.encode_tlv(0x04, priv_params),
    )
    header = ber.encode_tlv(
        0x30,
        ber.encode_value("Integer", 77)
        + ber.encode_value("Integer", 65507)
        + ber.encode_tlv(0x04, msg_flags)
        + ber.encode_value("Integer", 3),
    )
    whole = ber.encode_tlv(
        0x30,
        ber.encode_value("Integer", 3) + header + ber.encode_tlv(0x04, usm_params) + msg_data,
    )
    if level == 0:
        return whole
    assert local.auth_protocol is not None
    hash_name = AUTH_PROTOCOLS[local.auth_protocol][0]
    mac = hmac.digest(local.auth_key, whole, hash_name)[:mac_len]
    # The zeroed auth parameters are the only run of mac_len zero octets right after
    # the user name TLV; place the digest there.
    marker = ber.encode_tlv(0x04, local.name) + ber.encode_tlv(0x04, bytes(mac_len))
    at = whole.index(marker) + len(marker) - mac_len
    return whole[:at] + mac + whole[at + mac_len :]


def v3_user(name: str, engine_id: str = ENGINE_ID) -> V3User:
    """The test user ``name`` on ``engine_id`` (from ``v3_users``)."""
    (user,) = [u for u in v3_users() if u.user == name and u.engine_id == engine_id]
    return user
