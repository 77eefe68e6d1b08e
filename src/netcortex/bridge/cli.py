"""Bridge: the ``netcortex`` command line (the operator's edge; may import everything).

Subcommands::

    netcortex run --config FILE        run the engine until SIGINT/SIGTERM, then drain
    netcortex check-config FILE        validate a config file (all problems at once)
    netcortex outcomes [filters]       list stored reflex outcomes (table or --json)
    netcortex version                  print the version

Exit codes: 0 success, 1 runtime failure (a port in use, the store missing),
2 usage or configuration error. ``asyncio.run`` (or its uvloop runner) happens
here and in ``__main__`` only; the core is async-only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from netcortex import __version__
from netcortex.config import Config, LogConfig, load_config
from netcortex.contracts.codec import outcome_to_dict
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import ConfigError, NetcortexError, RegistryError

__all__ = ["main", "parse_time", "query_outcomes", "render_table"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_T = TypeVar("_T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A bad command-line value; reported on stderr with exit status 2."""


# -- value parsing ---------------------------------------------------------------


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse ``--since``/``--until``: a duration ago (``30s``, ``10m``, ``2h``, ``1d``,
    ``1w``), ``now``, or an ISO-8601 time (naive times are taken as UTC).

    Raises:
        UsageError: the value is neither.
    """
    current = now or datetime.now(UTC)
    text = value.strip()
    if text.lower() == "now":
        return current
    m = _DURATION.match(text)
    if m:
        amount, unit = float(m.group(1)), m.group(2).lower()
        try:
            return current - timedelta(seconds=amount * _UNIT_SECONDS[unit])
        except OverflowError:  # "99999999w": before year 1
            raise UsageError(f"invalid time {value!r}: that is too long ago") from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid time {value!r}: use a duration ago (30s, 10m, 2h, 1d, 1w) "
            "or an ISO-8601 time such as 2026-01-31T09:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_choices(values: Sequence[str] | None, enum: type[_T], what: str) -> list[_T] | None:
    """``--severity high,critical --severity warn`` → enum members (``None`` = any)."""
    if not values:
        return None
    allowed = [m.value for m in enum]  # type: ignore[attr-defined]
    out: list[_T] = []
    for chunk in values:
        for raw in chunk.split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item not in allowed:
                raise UsageError(
                    f"invalid {what} {raw.strip()!r}: choose from {', '.join(allowed)}"
                )
            member = enum(item)  # type: ignore[call-arg]
            if member not in out:
                out.append(member)
    return out or None


def _build_query(args: argparse.Namespace) -> OutcomeQuery:
    if args.limit < 1:
        raise UsageError(f"invalid --limit {args.limit}: must be at least 1")
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if since and until and since >= until:
        raise UsageError("--since must be earlier than --until")
    return OutcomeQuery(
        since=since,
        until=until,
        handler_id=args.handler,
        severity=_parse_choices(args.severity, Severity, "severity"),
        kind=_parse_choices(args.kind, OutcomeKind, "kind"),
        device=args.device,
        limit=args.limit,
    )


# -- output ----------------------------------------------------------------------


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(outcomes: Sequence[ReflexOutcome]) -> str:
    """A readable, aligned table: time, severity, handler, kind, target, summary."""
    header = ("TIME (UTC)", "SEVERITY", "HANDLER", "KIND", "TARGET", "SUMMARY")
    rows = [
        (
            _fmt_time(o.recorded_at),
            o.severity.value,
            o.handler_id,
            o.kind.value,
            o.target,
            " ".join(o.summary.split()),
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _count_line(n: int, limit: int) -> str:
    noun = "outcome" if n == 1 else "outcomes"
    line = f"{n} {noun}, newest first"
    if n >= limit:
        line += f" (limit {limit} reached; raise --limit to see more)"
    return line


# -- commands --------------------------------------------------------------------


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on uvloop when installed, else the default asyncio loop."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency on POSIX
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def _load(path: str | None, err: TextIO, *, check_handlers: bool = False) -> Config | None:
    """Load and validate ``path``; print every problem to ``err`` and return ``None``."""
    try:
        config = load_config(path)
        if check_handlers:
            _check_handlers(config)
    except ConfigError as exc:
        print(f"netcortex: configuration error\n{exc}", file=err)
        return None
    return config


def _check_handlers(config: Config) -> None:
    """``reflex.disabled`` must name built-in handlers (a typo would silently run one)."""
    from netcortex.reflex.registry import builtin_registry

    try:
        builtin_registry(disabled=tuple(config.reflex.disabled))
    except RegistryError as exc:
        problem = (config.source, "reflex.disabled", str(exc))
        raise ConfigError(
            f"1 configuration problem(s):\n  {config.source}: reflex.disabled: {exc}", [problem]
        ) from None


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config, sys.stderr, check_handlers=True)
    if config is None:
        return EXIT_USAGE

    import structlog

    from netcortex.logs import configure_logging

    configure_logging(config.log)
    log = structlog.get_logger("netcortex.bridge.cli")
    log.info("engine_starting", config=config.source, version=__version__)
    try:
        _run_async(_serve(config))
    except asyncio.CancelledError:  # a second signal aborted the drain
        log.warning("engine_aborted")
        return 130
    except (NetcortexError, OSError) as exc:
        # Expected failures (port in use, NATS unreachable): the message says it all.
        log.error("engine_failed", error=str(exc), error_type=type(exc).__name__)
        return EXIT_FAILURE
    return EXIT_OK


async def _serve(config: Config) -> None:
    """Run the engine; the first SIGINT/SIGTERM drains and stops, a second one aborts."""
    import structlog

    from netcortex.app import run_engine

    log = structlog.get_logger("netcortex.bridge.cli")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()

    def _on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("signal_received_again", signal=signum.name, action="abort")
            if task is not None:
                task.cancel()
            return
        log.info("signal_received", signal=signum.name, action="drain")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum)
    try:
        await run_engine(config, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _cmd_check_config(args: argparse.Namespace) -> int:
    _quiet_logging()
    config = _load(args.file, sys.stderr, check_handlers=True)
    if config is None:
        return EXIT_USAGE
    trap = (
        f"{config.trap.host}:{config.trap.port}, {len(config.trap.v3_users)} v3 users"
        if config.trap.enabled
        else "disabled"
    )
    bus: str = config.bus.backend
    if bus == "nats":
        from netcortex.logs import redact_url

        bus = f"nats {redact_url(config.bus.nats_url)}"
    print(f"OK: {args.file} (bus={bus}, store={config.store.backend}, trap={trap})")
    return EXIT_OK


async def query_outcomes(config: Config, query: OutcomeQuery) -> list[ReflexOutcome]:
    """Open the configured outcome store, run ``query`` and close it again.

    Safe while the engine runs (SQLite in WAL mode lets a reader in beside the
    writer).

    Raises:
        netcortex.errors.StoreError: the store cannot be opened or read.
    """
    from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

    store = SqliteOutcomeStore(config.store, read_only=True)
    await store.start()
    try:
        return await store.query(query)
    finally:
        await store.close()


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _quiet_logging() -> None:
    """Short commands: only warnings and errors, on stderr (stdout is the output)."""
    from netcortex.logs import configure_logging

    configure_logging(LogConfig(level="warning"), stream=_Stderr(), cache=False)  # type: ignore[arg-type]


def _cmd_outcomes(args: argparse.Namespace) -> int:
    _quiet_logging()
    try:
        query = _build_query(args)
    except UsageError as exc:
        print(f"netcortex outcomes: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    path = Path(config.store.sqlite_path)
    if not path.exists():
        print(
            f"netcortex outcomes: no outcome store at {path} "
            f"(store.sqlite_path in {config.source}); has the engine run yet?",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        outcomes = _run_async(query_outcomes(config, query))
    except NetcortexError as exc:
        print(f"netcortex outcomes: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        json.dump([outcome_to_dict(o) for o in outcomes], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        if outcomes:
            print(render_table(outcomes))
        print(_count_line(len(outcomes), query.limit))
    return EXIT_OK


def _cmd_version(_args: argparse.Namespace) -> int:
    print(f"netcortex {__version__}")
    return EXIT_OK


# -- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``netcortex`` argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="netcortex",
        description=(
            "netcortex: SNMP traps in, deterministic reflex outcomes out. "
            "Run the engine, check a config, or look at what it recorded."
        ),
        epilog="Run 'netcortex COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the engine until SIGINT/SIGTERM",
        description=(
            "Start the engine: bus, outcome store, reflex handlers, then the trap "
            "receiver. Logs one 'listening' event per listener. SIGINT or SIGTERM "
            "stops the receivers, drains in-flight events and exits 0; a second "
            "signal aborts the drain."
        ),
        epilog=(
            "Every key can be overridden from the environment as "
            "NETCORTEX_<SECTION>__<KEY>, e.g. NETCORTEX_TRAP__PORT=1162 or "
            "NETCORTEX_TRAP__COMMUNITIES='[public, lab]'."
        ),
    )
    run.add_argument(
        "--config", "-c", metavar="FILE", help="YAML config file (default: built-in defaults)"
    )
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and exit",
        description=(
            "Validate FILE (with NETCORTEX_* environment overrides applied). Prints a "
            "one-line summary and exits 0, or lists every problem with its key and "
            "file and exits 2."
        ),
    )
    check.add_argument("file", metavar="FILE", help="YAML config file")
    check.set_defaults(func=_cmd_check_config)

    outc = sub.add_parser(
        "outcomes",
        help="list stored reflex outcomes",
        description=(
            "List reflex outcomes from the store named by store.sqlite_path, newest "
            "first, as a table (default) or a JSON array. Safe while the engine runs."
        ),
        epilog=(
            "Examples: netcortex outcomes --since 10m --severity high,critical; "
            "netcortex outcomes --handler link_down --device 192.0.2.11 --json"
        ),
    )
    outc.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    outc.add_argument(
        "--since",
        metavar="WHEN",
        help="recorded at or after: 30s, 10m, 2h, 1d, 1w ago, or ISO-8601",
    )
    outc.add_argument("--until", metavar="WHEN", help="recorded before: same forms as --since")
    outc.add_argument(
        "--severity",
        action="append",
        metavar="LEVEL[,LEVEL]",
        help="only these severities: info, warn, high, critical (repeatable)",
    )
    outc.add_argument(
        "--kind",
        action="append",
        metavar="KIND[,KIND]",
        help="only these kinds: logged, skipped, suppressed, errored (repeatable)",
    )
    outc.add_argument("--handler", metavar="ID", help="only this handler id (e.g. link_down)")
    outc.add_argument("--device", metavar="DEVICE", help="only this device (e.g. 192.0.2.11)")
    outc.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N rows (default 100)"
    )
    outc.add_argument("--json", action="store_true", help="print a JSON array of outcome objects")
    outc.set_defaults(func=_cmd_outcomes)

    version = sub.add_parser("version", help="print the version", description="Print the version.")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netcortex`` console script and ``python -m netcortex``.

    Returns:
        The process exit status (0 ok, 1 runtime failure, 2 usage/config error).
    """
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:  # only reachable outside `run`, which handles signals
        return 130
