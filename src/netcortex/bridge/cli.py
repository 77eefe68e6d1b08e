"""Bridge: the ``netcortex`` command line (the operator's edge; may import everything).

Subcommands::

    netcortex run --config FILE        run the engine until SIGINT/SIGTERM, then drain
    netcortex check-config FILE        validate a config file (all problems at once)
    netcortex outcomes [filters]       list stored reflex outcomes (table or --json)
    netcortex maintenance add|list|remove
                                       manage maintenance windows (stored beside the
                                       outcomes; a running engine reloads them)
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
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from netcortex import __version__
from netcortex.config import Config, LogConfig, load_config
from netcortex.contracts.codec import outcome_to_dict
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import ConfigError, NetcortexError, RegistryError, StoreError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from netcortex.contracts.memory import MaintenanceWindow

__all__ = [
    "main",
    "parse_duration",
    "parse_time",
    "parse_when",
    "query_outcomes",
    "render_table",
    "render_windows",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_T = TypeVar("_T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
#: ``--duration``: ``3600``, ``3600s``, ``90m``, ``2h``, ``1h30m``, ``1d``, ``1w``.
_SPAN = re.compile(r"(\d+)\s*(s|sec|m|min|h|d|w)", re.IGNORECASE)
_SPANS = re.compile(r"^(?:\d+\s*(?:s|sec|m|min|h|d|w)\s*)+$", re.IGNORECASE)


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
            _check_windows(config)
            _check_dedup(config)
    except ConfigError as exc:
        print(f"netcortex: configuration error\n{exc}", file=err)
        return None
    return config


def _check_windows(config: Config) -> None:
    """``maintenance.windows`` must be windows the calendar accepts (RRULE, zone ...)."""
    from netcortex.memory.semantic.maintenance import config_windows

    config_windows(config.maintenance, config.source)  # raises ConfigError naming each


def _check_dedup(config: Config) -> None:
    """``dedup.windows`` must name built-in handlers (the engine refuses others too)."""
    from netcortex.app import _check_dedup_windows

    _check_dedup_windows(config.dedup, config.source)


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


# -- maintenance -----------------------------------------------------------------

#: ``MaintenanceWindow`` field → the ``maintenance add`` option that sets it.
_WINDOW_OPTIONS = {
    "id": "ID",
    "scope": "--scope",
    "target": "--target",
    "start": "--start",
    "end": "--end/--duration",
    "rrule": "--rrule",
    "timezone": "--timezone",
    "reason": "--reason",
}


def parse_when(value: str, zone: ZoneInfo, *, option: str, now: datetime | None = None) -> datetime:
    """Parse a window bound: ``now`` or ISO 8601 (naive = wall-clock time in ``zone``).

    The result is in ``zone`` and whole seconds (``now`` is truncated to the second).

    Raises:
        UsageError: not a time, or it has a fraction of a second (``option`` is named).
    """
    text = value.strip()
    if text.lower() == "now":
        current = now or datetime.now(UTC)
        return current.replace(microsecond=0).astimezone(zone)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid {option} {value!r}: use 'now' or an ISO-8601 time such as "
            "2026-12-06T22:00:00 (in --timezone) or 2026-12-06T21:00:00Z"
        ) from None
    if parsed.microsecond:
        raise UsageError(f"invalid {option} {value!r}: give whole seconds")
    if parsed.tzinfo is None:
        # fold=0: a wall-clock time inside a DST gap is shifted forward (RFC 5545).
        return parsed.replace(tzinfo=zone)
    return parsed.astimezone(zone)


def parse_duration(value: str) -> timedelta:
    """Parse ``--duration``: seconds (``3600``) or ``2h``, ``90m``, ``3600s``, ``1h30m``, ``1d``.

    Raises:
        UsageError: not a positive whole number of seconds in those forms.
    """
    text = value.strip()
    if text.isdigit():
        seconds = int(text)
    elif _SPANS.match(text):
        seconds = sum(int(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _SPAN.findall(text))
    else:
        raise UsageError(
            f"invalid --duration {value!r}: use seconds or a span such as 90m, 2h, 1h30m, 1d"
        )
    if seconds <= 0:
        raise UsageError(f"invalid --duration {value!r}: must be longer than 0 seconds")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(f"invalid --duration {value!r}: too long") from None


def _window_from_args(args: argparse.Namespace, now: datetime | None = None) -> MaintenanceWindow:
    """The window ``maintenance add`` describes; every problem named by its option.

    Raises:
        UsageError: one line per problem.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from netcortex.contracts.memory import MaintenanceWindow
    from netcortex.memory.semantic.maintenance import window_problems

    problems: list[str] = []
    start: datetime | None = None
    end: datetime | None = None
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(
            f"invalid --timezone {args.timezone!r}: use an IANA zone such as UTC, "
            "Europe/Amsterdam or America/New_York"
        )
        zone = ZoneInfo("UTC")  # still parse the times, to name every problem at once
    try:
        start = parse_when(args.start, zone, option="--start", now=now)
    except UsageError as exc:
        problems.append(str(exc))
    if args.end is not None:
        try:
            end = parse_when(args.end, zone, option="--end", now=now)
        except UsageError as exc:
            problems.append(str(exc))
    else:
        try:
            duration = parse_duration(args.duration)
        except UsageError as exc:
            problems.append(str(exc))
        else:
            if start is not None:
                # Absolute elapsed time: "2h" is two hours, also across a DST change.
                try:
                    end = (start.astimezone(UTC) + duration).astimezone(zone)
                except OverflowError:
                    problems.append(f"invalid --duration {args.duration!r}: ends after year 9999")
    if problems or start is None or end is None:
        raise UsageError("\n".join(problems))
    window = MaintenanceWindow(
        id=args.id,
        scope=args.scope,
        target=args.target,
        start=start,
        end=end,
        rrule=args.rrule or None,
        timezone=args.timezone,
        reason=args.reason,
    )
    found = window_problems(window)
    if found:
        raise UsageError("\n".join(f"invalid {_WINDOW_OPTIONS.get(f, f)}: {m}" for f, m in found))
    return window


def _fmt_local(moment: datetime, zone_name: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone_name)).isoformat()


def _covers(window: MaintenanceWindow, at: datetime) -> bool:
    """Whether an occurrence of ``window`` covers ``at`` (ignoring every other window)."""
    from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar

    # A calendar of this one window, never started: no I/O, the calendar's own rules.
    alone = SqliteMaintenanceCalendar(Path("unused.db"), windows=[window], reload_interval=0)
    target: dict[str, Any] = (
        {"tags": (window.target,)} if window.scope == "tag" else {window.scope: window.target}
    )
    return alone.active(at, **target) is not None


def _window_dict(window: MaintenanceWindow, source: str, active: bool) -> dict[str, Any]:
    return {
        "id": window.id,
        "scope": window.scope,
        "target": window.target,
        "start": _fmt_local(window.start, window.timezone),
        "end": _fmt_local(window.end, window.timezone),
        "rrule": window.rrule,
        "timezone": window.timezone,
        "reason": window.reason,
        "source": source,
        "active": active,
    }


def render_windows(rows: Sequence[dict[str, Any]]) -> str:
    """An aligned table of ``_window_dict`` rows (the reason last, unpadded)."""
    header = ("ID", "SCOPE", "TARGET", "START", "END", "RRULE", "TIMEZONE", "SOURCE", "ACTIVE")
    body = [
        (
            r["id"],
            r["scope"],
            r["target"],
            r["start"],
            r["end"],
            r["rrule"] or "-",
            r["timezone"],
            r["source"],
            "yes" if r["active"] else "no",
            " ".join(str(r["reason"]).split()),
        )
        for r in rows
    ]
    table = (
        (*header, "REASON"),
        *body,
    )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _maintenance_setup(
    args: argparse.Namespace, command: str
) -> tuple[Config, list[MaintenanceWindow]] | None:
    """Load the config and its windows (problems on stderr, ``None``)."""
    config = _load(args.config, sys.stderr)
    if config is None:
        return None
    from netcortex.memory.semantic.maintenance import config_windows

    try:
        windows = config_windows(config.maintenance, config.source)
    except ConfigError as exc:
        print(f"netcortex maintenance {command}: configuration error\n{exc}", file=sys.stderr)
        return None
    return config, windows


async def _with_calendar(
    config: Config, windows: Sequence[MaintenanceWindow], action: Callable[[Any], Any]
) -> Any:
    """Open the calendar the engine uses (store.sqlite_path + config windows), run ``action``."""
    from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar

    calendar = SqliteMaintenanceCalendar(
        config.store.sqlite_path, windows=windows, reload_interval=0
    )
    await calendar.start()
    try:
        return await action(calendar)
    finally:
        await calendar.close()


def _cmd_maintenance_add(args: argparse.Namespace) -> int:
    _quiet_logging()
    try:
        window = _window_from_args(args)
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"netcortex maintenance add: {line}", file=sys.stderr)
        return EXIT_USAGE
    setup = _maintenance_setup(args, "add")
    if setup is None:
        return EXIT_USAGE
    config, config_windows = setup
    if any(w.id == window.id for w in config_windows):
        print(
            f"netcortex maintenance add: window {window.id!r} comes from the config file "
            f"{config.source} (maintenance.windows); change it there or pick another ID",
            file=sys.stderr,
        )
        return EXIT_USAGE

    async def add(calendar: Any) -> bool:
        replaced = any(w.id == window.id for w in calendar.windows())
        await calendar.add(window)
        return replaced

    try:
        replaced = _run_async(_with_calendar(config, config_windows, add))
    except StoreError as exc:
        print(f"netcortex maintenance add: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    verb = "replaced" if replaced else "added"
    span = (
        f"{_fmt_local(window.start, window.timezone)} .. {_fmt_local(window.end, window.timezone)}"
    )
    repeat = f", repeating {window.rrule}" if window.rrule else ""
    print(
        f"{verb} maintenance window {window.id}: {window.scope} {window.target}, "
        f"{span} ({window.timezone}{repeat}) in {config.store.sqlite_path}"
    )
    if window.rrule is None and window.end <= datetime.now(UTC):
        print(
            f"netcortex maintenance add: note: window {window.id!r} has already ended",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_maintenance_list(args: argparse.Namespace) -> int:
    _quiet_logging()
    try:
        at = parse_time(args.active_at) if args.active_at else datetime.now(UTC)
    except UsageError as exc:
        print(f"netcortex maintenance list: --active-at: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup = _maintenance_setup(args, "list")
    if setup is None:
        return EXIT_USAGE
    config, config_windows = setup
    windows: list[MaintenanceWindow] = list(config_windows)
    if Path(config.store.sqlite_path).exists():

        async def read(calendar: Any) -> list[MaintenanceWindow]:
            result: list[MaintenanceWindow] = calendar.windows()
            return result

        try:
            windows = _run_async(_with_calendar(config, config_windows, read))
        except StoreError as exc:
            print(f"netcortex maintenance list: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    else:
        windows.sort(key=lambda w: (w.start.astimezone(UTC), w.id))
    config_ids = {w.id for w in config_windows}
    rows = [
        _window_dict(w, "config" if w.id in config_ids else "store", _covers(w, at))
        for w in windows
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if rows:
        print(render_windows(rows))
    n_active = sum(1 for r in rows if r["active"])
    noun = "window" if len(rows) == 1 else "windows"
    print(
        f"{len(rows)} {noun} ({len(rows) - sum(r['source'] == 'store' for r in rows)} config, "
        f"{sum(r['source'] == 'store' for r in rows)} store), "
        f"{n_active} active at {_fmt_time(at)}"
    )
    return EXIT_OK


def _cmd_maintenance_remove(args: argparse.Namespace) -> int:
    _quiet_logging()
    setup = _maintenance_setup(args, "remove")
    if setup is None:
        return EXIT_USAGE
    config, config_windows = setup
    if any(w.id == args.id for w in config_windows):
        print(
            f"netcortex maintenance remove: window {args.id!r} comes from the config file "
            f"{config.source} (maintenance.windows); delete it there and restart the engine",
            file=sys.stderr,
        )
        return EXIT_USAGE
    removed = False
    if Path(config.store.sqlite_path).exists():

        async def remove(calendar: Any) -> bool:
            result: bool = await calendar.remove(args.id)
            return result

        try:
            removed = _run_async(_with_calendar(config, config_windows, remove))
        except StoreError as exc:
            print(f"netcortex maintenance remove: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    if not removed:
        print(
            f"netcortex maintenance remove: no stored window {args.id!r} in "
            f"{config.store.sqlite_path} (see 'netcortex maintenance list')",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"removed maintenance window {args.id}")
    return EXIT_OK


def _add_maintenance_parser(sub: Any) -> None:
    maint = sub.add_parser(
        "maintenance",
        help="add, list or remove maintenance windows",
        description=(
            "Manage maintenance windows. Inside a window, outcomes for the covered "
            "targets are recorded as 'suppressed' (what would have fired stays on "
            "record) and facts still active when it ends get their normal outcome then. "
            "Windows added here are stored in store.sqlite_path beside the outcomes; a "
            "running engine picks up additions and removals within about a second. "
            "Windows from the config file (maintenance.windows) are listed but can "
            "only be changed there."
        ),
        epilog="Run 'netcortex maintenance COMMAND --help' for a command's options.",
    )
    msub = maint.add_subparsers(dest="maintenance_command", metavar="COMMAND", required=True)

    add = msub.add_parser(
        "add",
        help="add (or replace, by ID) a stored window",
        description=(
            "Add a maintenance window, or replace the stored window with the same ID. "
            "The window covers [start, end): start inclusive, end exclusive, whole "
            "seconds. A site window covers the site's devices and their interfaces; a "
            "device window covers its interfaces. With --rrule the first occurrence "
            "repeats on wall-clock time in --timezone (a Sunday 02:00 window stays at "
            "02:00 local across DST; every occurrence lasts end - start)."
        ),
        epilog=(
            "Examples: netcortex maintenance add sw1-card --scope device --target "
            "sw1-north --start now --duration 2h --reason 'line card swap'; "
            "netcortex maintenance add north-sundays --scope site --target north "
            "--start 2026-01-04T02:00:00 --duration 3h --rrule 'FREQ=WEEKLY;BYDAY=SU' "
            "--timezone Europe/Amsterdam"
        ),
    )
    add.add_argument("id", metavar="ID", help="window id: letters, digits, '.', '_', '-'")
    add.add_argument(
        "--scope",
        required=True,
        choices=("device", "interface", "site", "role", "tag"),
        help="what the target names",
    )
    add.add_argument(
        "--target",
        required=True,
        metavar="T",
        help="device name, DEVICE|INTERFACE, site slug, role slug or tag slug",
    )
    add.add_argument(
        "--start",
        required=True,
        metavar="WHEN",
        help="'now' or ISO-8601; without an offset it is wall-clock time in --timezone",
    )
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--end", metavar="WHEN", help="end (exclusive), same forms as --start")
    span.add_argument(
        "--duration",
        metavar="SPAN",
        help="length instead of --end: 2h, 90m, 3600s, 1h30m, 1d (elapsed time)",
    )
    add.add_argument(
        "--rrule",
        metavar="RRULE",
        help="RFC 5545 recurrence, e.g. 'FREQ=WEEKLY;BYDAY=SU' (HOURLY or coarser)",
    )
    add.add_argument(
        "--timezone",
        default="UTC",
        metavar="ZONE",
        help="IANA zone for naive times and the recurrence (default UTC)",
    )
    add.add_argument("--reason", default="", metavar="TEXT", help="free text for operators")
    add.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    add.set_defaults(func=_cmd_maintenance_add)

    lst = msub.add_parser(
        "list",
        help="list config and stored windows",
        description=(
            "List every window (config file and store) ordered by start: id, scope, "
            "target, first occurrence, rrule, timezone, source (config or store) and "
            "whether it is active now (or at --active-at). Times are shown in the "
            "window's timezone."
        ),
    )
    lst.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    lst.add_argument(
        "--active-at",
        metavar="WHEN",
        help="evaluate ACTIVE at this time: now, 2h (ago) or ISO-8601 (naive = UTC)",
    )
    lst.add_argument("--json", action="store_true", help="print a JSON array of window objects")
    lst.set_defaults(func=_cmd_maintenance_list)

    rem = msub.add_parser(
        "remove",
        help="remove a stored window",
        description=(
            "Remove a stored window. Exits 0 when it was removed, 1 when no stored "
            "window has that ID, 2 when the window comes from the config file."
        ),
    )
    rem.add_argument("id", metavar="ID", help="window id (see 'netcortex maintenance list')")
    rem.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    rem.set_defaults(func=_cmd_maintenance_remove)


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

    _add_maintenance_parser(sub)

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
