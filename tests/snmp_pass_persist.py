"""A net-snmp ``pass_persist`` program that serves a device's state from a JSON file.

``snmpd`` runs it (``pass_persist <root> <python> tests/snmp_pass_persist.py <state.json>
<root>``, see ``tests.servers.ScriptedSnmpAgent``) and talks to it over stdin/stdout
with the pass_persist protocol of snmpd.conf(5):

* ``PING`` → ``PONG``;
* ``get`` + OID → the object (three lines: OID, type, value) or ``NONE``;
* ``getnext`` + OID → the first object whose OID is lexicographically (by
  numeric sub-identifiers) greater than the OID, under this program's ``root``,
  or ``NONE`` past the end;
* ``set`` + OID + value → ``not-writable`` (read-only);
* end of input → exit.

The state file is read on every request, so a test changes what the agent
answers by rewriting it (atomically: write a temporary file, then ``os.replace``).
With a third argument, every object served is appended to that file as one JSON
line ``{"oid": ..., "value": ...}`` (one ``write``, so the programs of several
subtrees can share it): a test waits on it to know a poller has read a value.
Its shape (every key optional)::

    {"booted_at": 1764316800.0,           # sysUpTime.0 = hundredths of a second since
     "sys_uptime": 12345,                 # ... or a fixed sysUpTime.0 in TimeTicks
     "interfaces": [{"index": 3, "descr": "GigabitEthernet1/0/3", "name": "Gi1/0/3",
                     "admin": 1, "oper": 1, "last_change": 0}],
     "bgp_peers": [{"remote": "192.0.2.1", "state": 6}],
     "cisco_bgp_peers": [{"remote": "2001:db8::1", "state": 6}]}

Served objects: sysUpTime.0 (1.3.6.1.2.1.1.3.0); IF-MIB ifTable columns ifIndex,
ifDescr, ifAdminStatus, ifOperStatus, ifLastChange (1.3.6.1.2.1.2.2.1.{1,2,7,8,9})
and ifXTable ifName (1.3.6.1.2.1.31.1.1.1.1); BGP4-MIB bgpPeerTable bgpPeerState
and bgpPeerRemoteAddr (1.3.6.1.2.1.15.3.1.{2,7}); CISCO-BGP4-MIB cbgpPeer2State
(1.3.6.1.4.1.9.9.187.1.2.5.1.3, indexed by cbgpPeer2Type — 1 ipv4, 2 ipv6 — then
the address length and octets) for ``cisco_bgp_peers`` (IPv4 or IPv6). A state
file that is missing or not valid JSON serves nothing (``NONE``) rather than crashing the agent.

Standalone: stdlib only (snmpd starts it with any Python 3).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path
from typing import Any

Oid = tuple[int, ...]
Value = tuple[str, str]  # pass_persist type, value text

SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_NAME: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
BGP_PEER_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 15, 3, 1)
CBGP_PEER2_STATE: Oid = (1, 3, 6, 1, 4, 1, 9, 9, 187, 1, 2, 5, 1, 3)


def parse_oid(text: str) -> Oid:
    """``.1.3.6`` or ``1.3.6`` → ``(1, 3, 6)`` (empty for an empty or bad OID)."""
    try:
        return tuple(int(p) for p in text.strip().strip(".").split(".") if p)
    except ValueError:
        return ()


def format_oid(oid: Oid) -> str:
    """``(1, 3, 6)`` → ``.1.3.6`` (how snmpd expects OIDs back)."""
    return "." + ".".join(str(p) for p in oid)


def load_state(path: Path) -> dict[str, Any]:
    """The state file as a dict (empty when missing or malformed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def objects(state: dict[str, Any]) -> dict[Oid, Value]:
    """Every object the state describes, keyed by OID."""
    out: dict[Oid, Value] = {}
    if "sys_uptime" in state:
        ticks = int(state["sys_uptime"])
    else:
        ticks = int((time.time() - float(state.get("booted_at", time.time()))) * 100)
    out[SYS_UPTIME] = ("timeticks", str(max(0, ticks) % 2**32))
    for row in state.get("interfaces", []):
        i = int(row["index"])
        out[(*IF_ENTRY, 1, i)] = ("integer", str(i))
        out[(*IF_ENTRY, 2, i)] = ("string", str(row.get("descr", f"if{i}")))
        out[(*IF_ENTRY, 7, i)] = ("integer", str(int(row.get("admin", 1))))
        out[(*IF_ENTRY, 8, i)] = ("integer", str(int(row.get("oper", 1))))
        out[(*IF_ENTRY, 9, i)] = ("timeticks", str(int(row.get("last_change", 0))))
        if row.get("name") is not None:
            out[(*IFX_NAME, i)] = ("string", str(row["name"]))
    for peer in state.get("bgp_peers", []):
        remote = str(peer["remote"])
        index = tuple(int(p) for p in remote.split("."))
        out[(*BGP_PEER_ENTRY, 2, *index)] = ("integer", str(int(peer.get("state", 6))))
        out[(*BGP_PEER_ENTRY, 7, *index)] = ("ipaddress", remote)
    for peer in state.get("cisco_bgp_peers", []):
        addr = ipaddress.ip_address(str(peer["remote"]))
        packed = tuple(addr.packed)
        kind = 1 if addr.version == 4 else 2  # InetAddressType ipv4 / ipv6
        key = (*CBGP_PEER2_STATE, kind, len(packed), *packed)
        out[key] = ("integer", str(int(peer.get("state", 6))))
    return out


def lookup(state_path: Path, root: Oid, command: str, oid: Oid) -> tuple[Oid, Value] | None:
    """Answer ``get``/``getnext`` of ``oid`` among the objects under ``root``."""
    served = {k: v for k, v in objects(load_state(state_path)).items() if k[: len(root)] == root}
    if command == "get":
        value = served.get(oid)
        return None if value is None else (oid, value)
    for key in sorted(served):
        if key > oid:  # tuple order of ints is SNMP's lexicographic OID order
            return key, served[key]
    return None


def record(access_log: Path | None, oid: Oid, value: str) -> None:
    """Append one served object to ``access_log`` (one write: safe beside other writers)."""
    if access_log is None:
        return
    line = json.dumps({"oid": format_oid(oid)[1:], "value": value}) + "\n"
    with access_log.open("a", encoding="utf-8") as f:
        f.write(line)


def serve(state_path: Path, root: Oid, access_log: Path | None = None) -> None:
    """The pass_persist loop over stdin/stdout."""
    stdin, stdout = sys.stdin, sys.stdout

    def reply(*lines: str) -> None:
        stdout.write("".join(line + "\n" for line in lines))
        stdout.flush()

    while True:
        line = stdin.readline()
        if not line:
            return
        command = line.strip().lower()
        if command == "ping":
            reply("PONG")
        elif command in ("get", "getnext"):
            oid = parse_oid(stdin.readline())
            found = lookup(state_path, root, command, oid)
            if found is None:
                reply("NONE")
            else:
                key, (kind, value) = found
                record(access_log, key, value)
                reply(format_oid(key), kind, value)
        elif command == "set":
            stdin.readline()  # the OID
            stdin.readline()  # the type and value
            reply("not-writable")
        elif command:
            reply("NONE")


def main(argv: list[str]) -> int:
    """``snmp_pass_persist.py STATE_FILE [ROOT_OID [ACCESS_LOG]]``."""
    if len(argv) < 2:
        sys.stderr.write("usage: snmp_pass_persist.py STATE_FILE [ROOT_OID [ACCESS_LOG]]\n")
        return 2
    root = parse_oid(argv[2]) if len(argv) > 2 else ()
    access_log = Path(argv[3]) if len(argv) > 3 else None
    serve(Path(argv[1]), root, access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
