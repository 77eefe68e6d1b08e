"""``ScriptedSnmpAgent``: a real ``snmpd`` whose IF-MIB, BGP4-MIB and sysUpTime the test sets.

Read through the poller's own ``SnmpClient`` (GET and GETBULK walks), so these tests
prove both that the agent answers what its state file says — right after an atomic
rewrite — and that its ``pass_persist`` program speaks the protocol (PING/PONG, get,
getnext in lexicographic OID order, NONE past the end), which is also driven
directly over its stdin/stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from netcortex.sensory.poll.snmp import PollTarget, SnmpClient
from tests.servers import (
    PASS_PERSIST_SCRIPT,
    AgentBgpPeer,
    AgentInterface,
    ScriptedSnmpAgent,
    running_agent,
)

pytestmark = pytest.mark.snmp

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_TABLE = "1.3.6.1.2.1.2.2"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN = "1.3.6.1.2.1.2.2.1.7"
IF_OPER = "1.3.6.1.2.1.2.2.1.8"
IF_LAST_CHANGE = "1.3.6.1.2.1.2.2.1.9"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
BGP_PEER_STATE = "1.3.6.1.2.1.15.3.1.2"
BGP_PEER_REMOTE = "1.3.6.1.2.1.15.3.1.7"

# ifIndex 10 sorts after 3 by number but before it as text: the walk must be numeric.
INTERFACES = (
    AgentInterface(3, "Gi1/0/3", "GigabitEthernet1/0/3"),
    AgentInterface(10, "Gi1/0/10", "GigabitEthernet1/0/10", admin=2, oper=2),
    AgentInterface(25, None, "Loopback0"),
)
PEERS = (AgentBgpPeer("192.0.2.1"), AgentBgpPeer("10.0.0.2"))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ScriptedSnmpAgent]:
    """A running scripted agent with ``INTERFACES`` and ``PEERS``."""
    with running_agent(tmp_path, INTERFACES, PEERS) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    """A started ``SnmpClient``."""
    async with SnmpClient() as c:
        yield c


def target(agent: ScriptedSnmpAgent, community: str | None = None) -> PollTarget:
    """The agent as a poll target (its community unless ``community``)."""
    return PollTarget(agent.host, agent.port, community or agent.community, timeout=1.0, retries=1)


def values(varbinds: list[Any]) -> dict[str, Any]:
    """``{oid: value}``, text values decoded."""
    return {
        vb.oid: vb.value.decode() if isinstance(vb.value, bytes) else vb.value for vb in varbinds
    }


async def test_flipping_oper_status_is_seen_by_the_next_get(
    agent: ScriptedSnmpAgent, client: SnmpClient
) -> None:
    """ifOperStatus.3 is up; after the state file says down the next GET answers down,
    ifLastChange moves to the agent's uptime, and flipping back answers up again."""
    t = target(agent)
    oper, last = f"{IF_OPER}.3", f"{IF_LAST_CHANGE}.3"
    assert values(await client.get(t, [oper, last])) == {oper: 1, last: 0}

    agent.set_interface(3, oper=2)
    got = await client.get(t, [oper, last, SYS_UPTIME])
    assert [vb.type for vb in got] == ["Integer", "TimeTicks", "TimeTicks"]
    seen = values(got)
    assert seen[oper] == 2
    assert 0 < seen[last] <= seen[SYS_UPTIME]

    agent.set_interface(3, oper=1)
    assert values(await client.get(t, [oper]))[oper] == 1
    assert agent.interfaces[0] == AgentInterface(
        3, "Gi1/0/3", "GigabitEthernet1/0/3", oper=1, last_change=agent.interfaces[0].last_change
    )


async def test_access_log_records_what_was_answered(
    agent: ScriptedSnmpAgent, client: SnmpClient
) -> None:
    """Every object served is in the access log in order; ``wait_served`` returns once a
    value was answered after a mark and times out when it was not."""
    t = target(agent)
    oper = f"{IF_OPER}.3"
    assert agent.served(oper) == []
    await client.get(t, [oper])
    mark = agent.wait_served(oper, 1)
    assert mark == 1
    agent.set_interface(3, oper=2)
    await client.bulk_walk(t, IF_OPER)
    assert agent.served(oper) == [(oper, "1"), (oper, "2")]
    walked = [o for o, _ in agent.served() if o.startswith(f"{IF_OPER}.")]
    assert walked[-3:] == [oper, f"{IF_OPER}.10", f"{IF_OPER}.25"]
    assert agent.wait_served(oper, 2, after=mark) == 2
    with pytest.raises(TimeoutError):
        agent.wait_served(oper, 1, after=mark, timeout=0.05)


async def test_if_mib_walks_serve_exactly_the_state_in_numeric_oid_order(
    agent: ScriptedSnmpAgent, client: SnmpClient
) -> None:
    """Walking ifDescr, ifAdminStatus, ifOperStatus and ifName returns the state's rows
    (not the host's interfaces) in numeric ifIndex order; a row without a name has no
    ifName; the whole ifTable walk ends at the table's end."""
    t = target(agent)
    descr = await client.bulk_walk(t, IF_DESCR, max_repetitions=2)
    assert values(descr) == {
        f"{IF_DESCR}.3": "GigabitEthernet1/0/3",
        f"{IF_DESCR}.10": "GigabitEthernet1/0/10",
        f"{IF_DESCR}.25": "Loopback0",
    }
    assert [vb.oid for vb in descr] == [f"{IF_DESCR}.3", f"{IF_DESCR}.10", f"{IF_DESCR}.25"]
    assert values(await client.bulk_walk(t, IF_ADMIN)) == {
        f"{IF_ADMIN}.3": 1,
        f"{IF_ADMIN}.10": 2,
        f"{IF_ADMIN}.25": 1,
    }
    assert values(await client.bulk_walk(t, IF_OPER)) == {
        f"{IF_OPER}.3": 1,
        f"{IF_OPER}.10": 2,
        f"{IF_OPER}.25": 1,
    }
    assert values(await client.bulk_walk(t, IF_NAME)) == {
        f"{IF_NAME}.3": "Gi1/0/3",
        f"{IF_NAME}.10": "Gi1/0/10",
    }
    table = await client.bulk_walk(t, IF_TABLE)
    assert len(table) == 5 * len(INTERFACES)  # ifIndex, ifDescr, admin, oper, lastChange
    assert table[0].oid == "1.3.6.1.2.1.2.2.1.1.3"
    assert table[-1].oid == f"{IF_LAST_CHANGE}.25"


async def test_bgp_peers_walk_and_flip(agent: ScriptedSnmpAgent, client: SnmpClient) -> None:
    """bgpPeerState and bgpPeerRemoteAddr are indexed by the remote address in OID order
    (10.0.0.2 before 192.0.2.1); a session dropping to idle is seen by the next walk."""
    t = target(agent)
    assert values(await client.bulk_walk(t, BGP_PEER_STATE)) == {
        f"{BGP_PEER_STATE}.10.0.0.2": 6,
        f"{BGP_PEER_STATE}.192.0.2.1": 6,
    }
    remote = await client.bulk_walk(t, BGP_PEER_REMOTE)
    assert [(vb.oid, vb.type, vb.value) for vb in remote] == [
        (f"{BGP_PEER_REMOTE}.10.0.0.2", "IpAddress", "10.0.0.2"),
        (f"{BGP_PEER_REMOTE}.192.0.2.1", "IpAddress", "192.0.2.1"),
    ]

    agent.set_bgp_peer("192.0.2.1", 1)
    assert values(await client.bulk_walk(t, BGP_PEER_STATE)) == {
        f"{BGP_PEER_STATE}.10.0.0.2": 6,
        f"{BGP_PEER_STATE}.192.0.2.1": 1,
    }
    assert agent.bgp_peers == [AgentBgpPeer("192.0.2.1", 1), AgentBgpPeer("10.0.0.2", 6)]


CBGP_PEER2_STATE = "1.3.6.1.4.1.9.9.187.1.2.5.1.3"
V6_INDEX = "2.16.32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.1"  # ipv6, 16 octets, 2001:db8::1


async def test_cisco_bgp_peers_are_optional_and_indexed_by_inet_address(
    agent: ScriptedSnmpAgent, tmp_path: Path, client: SnmpClient
) -> None:
    """Without ``cisco_bgp_peers`` the agent has no cbgpPeer2Table (an empty walk);
    with it, cbgpPeer2State is indexed by type + length + octets (IPv4 before IPv6)
    and a state change is seen by the next walk."""
    assert await client.bulk_walk(target(agent), CBGP_PEER2_STATE) == []
    (tmp_path / "cisco").mkdir()
    cisco = ScriptedSnmpAgent(
        cisco_bgp_peers=[AgentBgpPeer("2001:db8::1"), AgentBgpPeer("192.0.2.1", 3)],
        work_dir=tmp_path / "cisco",
    )
    with cisco:
        t = target(cisco)
        assert values(await client.bulk_walk(t, CBGP_PEER2_STATE)) == {
            f"{CBGP_PEER2_STATE}.1.4.192.0.2.1": 3,
            f"{CBGP_PEER2_STATE}.{V6_INDEX}": 6,
        }
        cisco.set_cisco_bgp_peer("2001:db8::1", 1)
        assert values(await client.bulk_walk(t, CBGP_PEER2_STATE)) == {
            f"{CBGP_PEER2_STATE}.1.4.192.0.2.1": 3,
            f"{CBGP_PEER2_STATE}.{V6_INDEX}": 1,
        }
        assert cisco.cisco_bgp_peers == [
            AgentBgpPeer("2001:db8::1", 1),
            AgentBgpPeer("192.0.2.1", 3),
        ]


async def test_uptime_counts_fixes_and_reboots(
    agent: ScriptedSnmpAgent, client: SnmpClient
) -> None:
    """sysUpTime.0 comes from the state file (it overrides snmpd's own): a fixed value,
    then counting from a reboot (lower than before)."""
    t = target(agent)
    agent.set_uptime(5_000_000)
    assert values(await client.get(t, [SYS_UPTIME])) == {SYS_UPTIME: 5_000_000}
    agent.reboot()
    after = values(await client.get(t, [SYS_UPTIME]))[SYS_UPTIME]
    assert 0 <= after < 5_000_000
    assert after <= agent.uptime_ticks


async def test_missing_rows_and_removed_rows(agent: ScriptedSnmpAgent, client: SnmpClient) -> None:
    """A GET of an absent ifIndex is a noSuch* varbind; a row removed from the state
    vanishes from the next walk; a new row appears."""
    t = target(agent)
    (missing,) = await client.get(t, [f"{IF_OPER}.99"])
    assert missing.type in {"noSuchInstance", "noSuchObject"}
    state = agent.read_state()
    state["interfaces"] = [r for r in state["interfaces"] if r["index"] != 10]
    agent.write_state(state)
    agent.set_interface(7, descr="GigabitEthernet1/0/7", name="Gi1/0/7", oper=7)
    assert values(await client.bulk_walk(t, IF_OPER)) == {
        f"{IF_OPER}.3": 1,
        f"{IF_OPER}.7": 7,
        f"{IF_OPER}.25": 1,
    }
    with pytest.raises(KeyError):
        agent.set_interface(42, oper=2)


# ------------------------------------------------------- the pass_persist program


class PassPersist:
    """The pass_persist program run directly, one request at a time."""

    def __init__(self, state_path: Path, root: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PASS_PERSIST_SCRIPT), str(state_path), root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, *lines: str, answer_lines: int = 3) -> list[str]:
        """Send ``lines``; read one answer (``NONE``/``PONG``/... is a single line)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()
        first = self.proc.stdout.readline().rstrip("\n")
        if first in {"NONE", "PONG", "not-writable"}:
            return [first]
        return [first] + [self.proc.stdout.readline().rstrip("\n") for _ in range(answer_lines - 1)]

    def close(self) -> int:
        """Close stdin (snmpd going away) and return the exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


@pytest.fixture
def program(tmp_path: Path) -> Iterator[tuple[PassPersist, Path]]:
    """The program serving the IF-MIB ifTable from a state file with ``INTERFACES``."""
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "sys_uptime": 100,
                "interfaces": [
                    {"index": i.index, "name": i.name, "descr": i.descr, "oper": i.oper}
                    for i in INTERFACES
                ],
            }
        ),
        encoding="utf-8",
    )
    pp = PassPersist(state, f".{IF_TABLE}")
    yield pp, state
    if pp.proc.poll() is None:
        pp.close()


def test_pass_persist_protocol(program: tuple[PassPersist, Path]) -> None:
    """PING/PONG; get of an object and of a non-object; getnext from before the root,
    inside a column, across columns, and NONE past the end; set is refused; a broken
    state file answers NONE without dying; end of input ends the program."""
    pp, state = program
    assert pp.ask("PING") == ["PONG"]
    assert pp.ask("get", f".{IF_OPER}.10") == [f".{IF_OPER}.10", "integer", "2"]
    assert pp.ask("get", f".{IF_OPER}.11") == ["NONE"]
    assert pp.ask("get", SYS_UPTIME) == ["NONE"]  # outside this program's root
    assert pp.ask("getnext", ".1.3.6.1.2.1.1") == [".1.3.6.1.2.1.2.2.1.1.3", "integer", "3"]
    assert pp.ask("getnext", f".{IF_DESCR}.3") == [
        f".{IF_DESCR}.10",
        "string",
        "GigabitEthernet1/0/10",
    ]
    assert pp.ask("getnext", f".{IF_DESCR}.25") == [f".{IF_ADMIN}.3", "integer", "1"]
    assert pp.ask("getnext", f".{IF_LAST_CHANGE}.10") == [f".{IF_LAST_CHANGE}.25", "timeticks", "0"]
    assert pp.ask("getnext", f".{IF_LAST_CHANGE}.25") == ["NONE"]
    assert pp.ask("set", f".{IF_OPER}.3", "integer 2") == ["not-writable"]
    state.write_text("{not json", encoding="utf-8")
    assert pp.ask("get", f".{IF_OPER}.10") == ["NONE"]
    assert pp.ask("PING") == ["PONG"]
    assert pp.close() == 0
