"""SnmpClient against a real net-snmp ``snmpd`` and against scripted UDP agents.

The real agent proves the wire format (GET, GETBULK walks of the host's IF-MIB,
endOfMibView, wrong community); the scripted agents (a test-owned socket that
answers what the test says) prove what a real agent will not do on demand:
garbage and spoofed datagrams, error-status, non-increasing OIDs, tooBig.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from netcortex.errors import AgentError, PollError, PollTimeout
from netcortex.sensory.poll.snmp import PollTarget, SnmpClient
from netcortex.sensory.trap.ber import (
    GET_BULK,
    GET_REQUEST,
    RESPONSE,
    Message,
    Pdu,
    VarBind,
    decode_message,
    encode_message,
)
from tests.servers import SnmpdServer, free_udp_port

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
SYSTEM = "1.3.6.1.2.1.1"


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    async with SnmpClient() as c:
        yield c


def agent_target(snmpd: SnmpdServer, **kw: object) -> PollTarget:
    args: dict[str, object] = {"community": SecretStr(snmpd.community), "timeout": 1.0}
    args.update(kw)
    return PollTarget(snmpd.host, snmpd.port, **args)  # type: ignore[arg-type]


class ScriptedAgent:
    """A UDP socket on 127.0.0.1 the test reads requests from and answers by hand."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def recv(self, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)
        return data, addr

    async def request(self, timeout: float = 5.0) -> tuple[Message, tuple[str, int]]:
        data, addr = await self.recv(timeout)
        return decode_message(data), addr

    def answer(
        self,
        to: tuple[str, int],
        request_id: int,
        varbinds: list[VarBind],
        *,
        community: bytes = b"scripted",
        error_status: int = 0,
        error_index: int = 0,
    ) -> None:
        pdu = Pdu(
            RESPONSE,
            request_id=request_id,
            error_status=error_status,
            error_index=error_index,
            varbinds=varbinds,
        )
        self.sock.sendto(encode_message(Message(1, community, pdu)), to)

    def target(self, **kw: object) -> PollTarget:
        args: dict[str, object] = {"community": "scripted", "timeout": 2.0, "retries": 0}
        args.update(kw)
        return PollTarget("127.0.0.1", self.port, **args)  # type: ignore[arg-type]


@pytest.fixture
def agent() -> Iterator[ScriptedAgent]:
    a = ScriptedAgent()
    yield a
    a.sock.close()


# --------------------------------------------------------------------------- real snmpd


@pytest.mark.snmp
async def test_get_returns_typed_scalars_in_request_order(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """A GET of sysName.0 and sysUpTime.0 returns both, typed, in the order asked."""
    vbs = await client.get(agent_target(snmpd), [SYS_NAME, SYS_UPTIME])
    assert [vb.oid for vb in vbs] == [SYS_NAME, SYS_UPTIME]
    assert vbs[0].type == "OctetString"
    assert vbs[0].value == snmpd.sys_name.encode()
    assert vbs[1].type == "TimeTicks"
    assert isinstance(vbs[1].value, int)
    assert vbs[1].value >= 0
    assert client.in_flight == 0


@pytest.mark.snmp
async def test_get_missing_objects_come_back_as_data(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """noSuchInstance / noSuchObject are varbinds with value None, not errors."""
    vbs = await client.get(agent_target(snmpd), ["1.3.6.1.2.1.1.5.7", "1.3.6.1.2.1.1.99.0"])
    assert [(vb.type, vb.value) for vb in vbs] == [
        ("noSuchInstance", None),
        ("noSuchObject", None),
    ]


@pytest.mark.snmp
async def test_bulk_walk_if_descr_covers_every_interface(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """The ifDescr walk has one OctetString per interface (ifNumber.0) and stays in
    the subtree; the result does not depend on max_repetitions."""
    target = agent_target(snmpd)
    (if_number,) = await client.get(target, [IF_NUMBER])
    assert isinstance(if_number.value, int)
    assert if_number.value >= 1  # at least lo
    walked = await client.bulk_walk(target, IF_DESCR, max_repetitions=50)
    assert len(walked) == if_number.value
    assert all(vb.oid.startswith(IF_DESCR + ".") for vb in walked)
    assert all(vb.type == "OctetString" and isinstance(vb.value, bytes) for vb in walked)
    assert b"lo" in [vb.value for vb in walked]
    indexes = [int(vb.oid.rsplit(".", 1)[1]) for vb in walked]
    assert indexes == sorted(set(indexes))
    # One row per GETBULK round: many rounds, same answer.
    assert await client.bulk_walk(target, IF_DESCR, max_repetitions=1) == walked


@pytest.mark.snmp
async def test_bulk_walk_if_oper_status_is_integers_per_interface(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """ifOperStatus walks to one Integer 1..7 per ifDescr row, same indexes."""
    target = agent_target(snmpd)
    descr, oper = await asyncio.gather(
        client.bulk_walk(target, IF_DESCR), client.bulk_walk(target, IF_OPER_STATUS, 3)
    )
    assert [vb.oid.rsplit(".", 1)[1] for vb in oper] == [vb.oid.rsplit(".", 1)[1] for vb in descr]
    assert oper
    assert all(vb.type == "Integer" and isinstance(vb.value, int) for vb in oper)
    assert all(1 <= vb.value <= 7 for vb in oper)  # type: ignore[operator]


@pytest.mark.snmp
async def test_bulk_walk_stops_at_end_of_mib_view(snmpd: SnmpdServer, client: SnmpClient) -> None:
    """With a view of only ``system``, a walk of it ends on endOfMibView, and a walk
    past the view is empty."""
    target = agent_target(snmpd, community=snmpd.system_community)
    walked = await client.bulk_walk(target, SYSTEM, max_repetitions=4)
    oids = [vb.oid for vb in walked]
    assert SYS_NAME in oids
    assert SYS_UPTIME in oids
    assert all(o.startswith(SYSTEM + ".") for o in oids)
    assert await client.bulk_walk(target, "1.3.6.1.2.1.2") == []
    # A scalar instance has no subtree: its walk is empty, the walk ends.
    assert await client.bulk_walk(agent_target(snmpd), SYS_NAME) == []


@pytest.mark.snmp
async def test_wrong_community_times_out_after_retries(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """snmpd drops a wrong community: PollTimeout after timeout * (retries + 1), and
    neither the error nor the target's repr shows the community."""
    target = agent_target(snmpd, community=SecretStr("not-the-community"), timeout=0.2, retries=2)
    t0 = time.monotonic()
    with pytest.raises(PollTimeout) as info:
        await client.get(target, [SYS_UPTIME])
    elapsed = time.monotonic() - t0
    assert 0.6 <= elapsed < 3.0
    assert info.value.target == f"127.0.0.1:{snmpd.port}"
    assert "3 attempts" in str(info.value)
    assert "not-the-community" not in str(info.value)
    assert "not-the-community" not in repr(target)
    assert client.in_flight == 0


@pytest.mark.snmp
async def test_dead_agent_does_not_delay_fifty_concurrent_gets(
    snmpd: SnmpdServer, client: SnmpClient
) -> None:
    """50 concurrent GETs to snmpd all complete while a GET to an unused port is
    still waiting; that one then fails with PollTimeout."""
    dead = PollTarget("127.0.0.1", free_udp_port(), community="x", timeout=1.5, retries=1)
    dead_task = asyncio.create_task(client.get(dead, [SYS_UPTIME]))
    live = [asyncio.create_task(client.get(agent_target(snmpd), [SYS_NAME])) for _ in range(50)]
    done, _ = await asyncio.wait(live, timeout=2.5)
    assert len(done) == 50
    assert not dead_task.done()
    assert all(t.result()[0].value == snmpd.sys_name.encode() for t in live)
    with pytest.raises(PollTimeout):
        await dead_task


# --------------------------------------------------------------------------- scripted agents


async def test_retries_resend_the_same_request(agent: ScriptedAgent, client: SnmpClient) -> None:
    """A silent agent receives retries + 1 identical datagrams (same request-id), then
    the request fails; a late answer to the first copy would have completed it."""
    task = asyncio.create_task(client.get(agent.target(timeout=0.1, retries=2), [SYS_UPTIME]))
    copies = [(await agent.recv())[0] for _ in range(3)]
    with pytest.raises(PollTimeout):
        await task
    assert copies[0] == copies[1] == copies[2]
    msg = decode_message(copies[0])
    assert msg.version == 1
    assert msg.community == b"scripted"
    assert msg.pdu is not None
    assert msg.pdu.tag == GET_REQUEST
    assert [vb.oid for vb in msg.pdu.varbinds] == [SYS_UPTIME]


async def test_late_answer_to_first_copy_completes(
    agent: ScriptedAgent, client: SnmpClient
) -> None:
    """An answer arriving after a re-send (to either copy) completes the request."""
    task = asyncio.create_task(client.get(agent.target(timeout=0.1, retries=5), [SYS_UPTIME]))
    (msg, addr), _ = await agent.request(), await agent.recv()  # first copy, then a re-send
    assert msg.pdu is not None
    agent.answer(addr, msg.pdu.request_id, [VarBind(SYS_UPTIME, "TimeTicks", 42)])
    assert await task == [VarBind(SYS_UPTIME, "TimeTicks", 42)]


async def test_garbage_and_foreign_datagrams_are_ignored(
    agent: ScriptedAgent, client: SnmpClient
) -> None:
    """Garbage, a non-Response, an unknown request-id, a wrong community and a right
    answer from a wrong address are each ignored and counted; the real answer after
    them completes the request."""
    task = asyncio.create_task(client.get(agent.target(), [SYS_NAME]))
    msg, addr = await agent.request()
    assert msg.pdu is not None
    rid = msg.pdu.request_id
    assert addr[1] == client.local_address[1]
    agent.sock.sendto(b"\x00garbage\xff", addr)
    agent.sock.sendto(
        encode_message(Message(1, b"scripted", Pdu(GET_REQUEST, request_id=rid))), addr
    )
    agent.answer(addr, rid + 1, [VarBind(SYS_NAME, "OctetString", b"stray")])
    agent.answer(addr, rid, [VarBind(SYS_NAME, "OctetString", b"forged")], community=b"other")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:
        pdu = Pdu(RESPONSE, request_id=rid, varbinds=[VarBind(SYS_NAME, "OctetString", b"spoof")])
        spoofer.sendto(encode_message(Message(1, b"scripted", pdu)), addr)
    agent.answer(addr, rid, [VarBind(SYS_NAME, "OctetString", b"real")])
    assert await task == [VarBind(SYS_NAME, "OctetString", b"real")]
    assert client.ignored == {
        "malformed": 1,
        "not_v2c_response": 1,
        "unknown_request_id": 1,
        "wrong_community": 1,
        "wrong_source": 1,
    }


async def test_error_status_raises_agent_error(agent: ScriptedAgent, client: SnmpClient) -> None:
    """A Response with error-status genErr fails the GET with AgentError naming it."""
    task = asyncio.create_task(client.get(agent.target(), [SYS_NAME]))
    msg, addr = await agent.request()
    assert msg.pdu is not None
    agent.answer(addr, msg.pdu.request_id, msg.pdu.varbinds, error_status=5, error_index=1)
    with pytest.raises(AgentError) as info:
        await task
    assert (info.value.status, info.value.index) == ("genErr", 1)
    assert info.value.target == f"127.0.0.1:{agent.port}"


async def test_walk_with_non_increasing_oids_fails(
    agent: ScriptedAgent, client: SnmpClient
) -> None:
    """An agent that answers an OID not after the one asked for would loop a walk
    forever: AgentError oidNotIncreasing instead."""
    task = asyncio.create_task(client.bulk_walk(agent.target(), IF_DESCR))
    msg, addr = await agent.request()
    assert msg.pdu is not None
    assert msg.pdu.tag == GET_BULK
    assert (msg.pdu.error_status, msg.pdu.error_index) == (0, 25)  # non-repeaters, max-reps
    agent.answer(
        addr,
        msg.pdu.request_id,
        [
            VarBind(IF_DESCR + ".2", "OctetString", b"b"),
            VarBind(IF_DESCR + ".1", "OctetString", b"a"),
        ],
    )
    with pytest.raises(AgentError) as info:
        await task
    assert info.value.status == "oidNotIncreasing"


async def test_walk_halves_max_repetitions_on_too_big(
    agent: ScriptedAgent, client: SnmpClient
) -> None:
    """tooBig makes the walk ask again with half the repetitions; the walk continues
    from the last OID received and ends at the subtree boundary."""
    task = asyncio.create_task(client.bulk_walk(agent.target(), IF_DESCR, max_repetitions=8))
    seen: list[tuple[str, int]] = []
    script = [
        ("tooBig", []),
        ("ok", [VarBind(IF_DESCR + ".1", "OctetString", b"a")]),
        (
            "ok",
            [
                VarBind(IF_DESCR + ".2", "OctetString", b"b"),
                VarBind(IF_OPER_STATUS + ".1", "Integer", 1),
            ],
        ),
    ]
    for kind, varbinds in script:
        msg, addr = await agent.request()
        assert msg.pdu is not None
        seen.append((msg.pdu.varbinds[0].oid, msg.pdu.error_index))
        if kind == "tooBig":
            agent.answer(addr, msg.pdu.request_id, msg.pdu.varbinds, error_status=1)
        else:
            agent.answer(addr, msg.pdu.request_id, varbinds)
    assert [vb.value for vb in await task] == [b"a", b"b"]
    assert seen == [(IF_DESCR, 8), (IF_DESCR, 4), (IF_DESCR + ".1", 4)]


async def test_close_fails_requests_in_flight(agent: ScriptedAgent) -> None:
    """Closing the client fails a waiting request with PollError at once."""
    client = SnmpClient()
    await client.start()
    task = asyncio.create_task(client.get(agent.target(timeout=30.0), [SYS_NAME]))
    await agent.request()
    client.close()
    with pytest.raises(PollError, match="closed"):
        await asyncio.wait_for(task, 1.0)
    with pytest.raises(PollError, match="closed"):
        await client.get(agent.target(), [SYS_NAME])


def test_poll_target_validates_and_hides_community() -> None:
    """Bad port/timeout/retries are refused; the community is not in the repr."""
    t = PollTarget("192.0.2.1", community=SecretStr("s3cret-community"))
    assert "s3cret" not in repr(t)
    assert t.community_bytes() == b"s3cret-community"
    assert PollTarget("2001:db8::1", 1161).address == "[2001:db8::1]:1161"
    for bad in ({"port": 0}, {"timeout": 0.0}, {"retries": -1}):
        with pytest.raises(ValueError, match=r"out of range|must be"):
            PollTarget("192.0.2.1", **bad)  # type: ignore[arg-type]
