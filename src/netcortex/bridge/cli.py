"""Bridge: the ``netcortex`` command line (the operator's edge; may import everything).

Subcommands::

    netcortex run --config FILE        run the engine until SIGINT/SIGTERM, then drain
                [--record FILE]        (and append every sensory event to FILE)
                [--role ROLE]          all | receiver | worker (docs/DEPLOYMENT.md)
    netcortex replay FILE [--speed N]  run recorded events through the reflex pipeline
                                       and the correlator on a virtual clock
    netcortex check-config FILE        validate a config file (all problems at once)
    netcortex outcomes [filters]       list stored reflex outcomes (table or --json)
    netcortex outcomes --export FILE   write every matching outcome as JSON lines
    netcortex maintenance add|list|remove
                                       manage maintenance windows (stored beside the
                                       outcomes; a running engine reloads them)
    netcortex graph backfill [--since WHEN | --hours N]
                                       mirror stored outcomes into the Bolt graph
    netcortex outbox [--list STATE | --retry-dead [ID ...]]
                                       the NetBox journal outbox: counts, jobs, requeue
    netcortex incidents [filters | --id ID]
                                       correlated incidents (table, detail or --json)
    netcortex demo [--embedded] [--json]
                                       play the built-in scenario through the real
                                       pipeline and show the incidents it made
    netcortex version                  print the version

Exit codes: 0 success, 1 runtime failure (a port in use, the store missing),
2 usage or configuration error. ``asyncio.run`` (or its uvloop runner) happens
here and in ``__main__`` only; the core is async-only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from netcortex import __version__
from netcortex.bridge.replay import add_replay_parser
from netcortex.bridge.views import (
    CLI_QUERY_NAMES,
    CLI_WINDOW_NAMES,
    UsageError,
    build_window,
    fmt_age,
    fmt_local,
    incident_dict,
    incident_query,
    job_dict,
    outbox_dict,
    outbox_line,
    outcome_query,
    parse_duration,
    parse_time,
    parse_when,
    window_rows,
)
from netcortex.config import ROLES, Config, LogConfig, load_config
from netcortex.contracts.codec import outcome_to_dict
from netcortex.contracts.incidents import Incident, IncidentCursor, IncidentStore
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery, OutcomeStore
from netcortex.contracts.outbox import JobState, JournalJob, Outbox
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import ConfigError, NetcortexError, RegistryError, StoreError
from netcortex.pg import redact_dsn

if TYPE_CHECKING:
    from netcortex.contracts.memory import MaintenanceWindow

__all__ = [
    "UsageError",
    "backfill_graph",
    "export_outcomes",
    "find_incident",
    "incident_status",
    "main",
    "outbox_status",
    "parse_duration",
    "parse_time",
    "parse_when",
    "query_outcomes",
    "render_incident",
    "render_incidents",
    "render_jobs",
    "render_table",
    "render_windows",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_T = TypeVar("_T")


# -- value parsing (shared with the HTTP API: bridge/views.py) ---------------------


def _build_query(args: argparse.Namespace) -> OutcomeQuery:
    return outcome_query(
        since=args.since,
        until=args.until,
        handler=args.handler,
        severity=args.severity,
        kind=args.kind,
        device=args.device,
        site=args.site,
        limit=args.limit,
        names=CLI_QUERY_NAMES,
    )


# -- output ----------------------------------------------------------------------


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def align(table: Sequence[Sequence[str]]) -> str:
    """Rows of cells as aligned text: every column padded to its widest cell, two
    spaces apart, the last column unpadded (free text such as a summary)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


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
    return align((header, *rows))


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


def _load(
    path: str | None, err: TextIO, *, check_handlers: bool = False, role: str | None = None
) -> Config | None:
    """Load and validate ``path`` (``role``: ``run --role``, over ``engine.role``); print
    every problem to ``err`` and return ``None``."""
    try:
        config = load_config(path, role=role)
        if check_handlers:
            _check_handlers(config)
            _check_windows(config)
            _check_dedup(config)
            from netcortex.app import _check_journal_handlers

            _check_journal_handlers(config)
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
    config = _load(args.config, sys.stderr, check_handlers=True, role=args.role)
    if config is None:
        return EXIT_USAGE

    import structlog

    from netcortex.logs import configure_logging

    configure_logging(config.log)
    log = structlog.get_logger("netcortex.bridge.cli")
    log.info("engine_starting", config=config.source, version=__version__, role=config.engine.role)
    try:
        _run_async(_serve(config, record=getattr(args, "record", None)))
    except asyncio.CancelledError:  # a second signal aborted the drain
        log.warning("engine_aborted")
        return 130
    except (NetcortexError, OSError) as exc:
        # Expected failures (port in use, NATS unreachable): the message says it all.
        log.error("engine_failed", error=str(exc), error_type=type(exc).__name__)
        return EXIT_FAILURE
    return EXIT_OK


async def _serve(config: Config, *, record: str | None = None) -> None:
    """Run the engine; the first SIGINT/SIGTERM drains and stops, a second one aborts.

    ``record``: ``--record FILE``, every sensory event appended to FILE as JSON lines."""
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
        await run_engine(config, stop, record=record)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _cmd_check_config(args: argparse.Namespace) -> int:
    _quiet_logging()
    config = _load(args.file, sys.stderr, check_handlers=True)
    if config is None:
        return EXIT_USAGE
    from netcortex.roles import role_plan, role_warnings

    plan = role_plan(config)
    trap = (
        f"{config.trap.host}:{config.trap.port}, {len(config.trap.v3_users)} v3 users"
        if config.trap.enabled
        else "disabled"
    )
    bus: str = config.bus.backend
    if bus == "nats":
        from netcortex.logs import redact_url

        bus = f"nats {redact_url(config.bus.nats_url)}"
    http = (
        f"{config.http.host}:{config.http.port}"
        + ("" if config.http.api_token else ", API closed: no http.api_token")
        if config.http.enabled
        else "disabled"
    )
    if not (config.http.enabled and config.meraki.enabled):
        meraki = "disabled"
    elif config.meraki.shared_secret is None:
        meraki = "refusing all: no meraki.shared_secret"
    else:
        meraki = "POST /webhooks/meraki"
    poll = "off"
    if config.poll.enabled:
        poll = f"{len(config.poll.targets)} targets every {config.poll.interval_seconds:g}s"
        if config.poll.inventory and config.inventory.backend != "none":
            poll += " +inventory"
    graph = "off"
    if config.graph.enabled:
        from netcortex.logs import redact_url

        graph = redact_url(config.graph.uri)
        if config.graph.database:
            graph += f" database {config.graph.database}"
    journal = "off"
    if config.journal.enabled and config.journal.netbox_url:
        from netcortex.logs import redact_url

        journal = f"{redact_url(config.journal.netbox_url)} (min {config.journal.min_severity})"
    store: str = config.store.backend
    if not plan.intake:  # a worker: no trap socket, no pollers, no webhook route
        trap = poll = meraki = "n/a"
    if not plan.reflexes:  # a receiver: no store, graph or journal
        store = graph = journal = "n/a"
    print(
        f"OK: {args.file} (role={plan.role}, bus={bus}, store={store}, trap={trap}, "
        f"http={http}, meraki={meraki}, poll={poll}, graph={graph}, journal={journal})"
    )
    for warning in role_warnings(config):
        print(f"warning: {warning}")
    return EXIT_OK


def read_store(config: Config) -> OutcomeStore:
    """A read-only instance of the configured outcome store (not started)."""
    if config.store.backend == "postgres":
        from netcortex.memory.episodic.postgres import PostgresOutcomeStore

        return PostgresOutcomeStore(config.store, read_only=True)
    from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

    return SqliteOutcomeStore(config.store, read_only=True)


async def query_outcomes(config: Config, query: OutcomeQuery) -> list[ReflexOutcome]:
    """Open the configured outcome store, run ``query`` and close it again.

    Safe while the engine runs (SQLite in WAL mode lets a reader in beside the
    writer; PostgreSQL readers never block writers). Opens read-only: nothing is
    created or migrated.

    Raises:
        netcortex.errors.StoreError: the store cannot be opened or read.
    """
    store = read_store(config)
    await store.start()
    try:
        return await store.query(query)
    finally:
        await store.close()


#: Outcomes read per page by ``--export`` (the store is walked with the page cursor).
EXPORT_PAGE_SIZE = 1000


async def export_outcomes(
    config: Config, query: OutcomeQuery, out: TextIO, *, page_size: int = EXPORT_PAGE_SIZE
) -> int:
    """Write every outcome matching ``query`` (ignoring its ``limit``) to ``out`` as JSON lines.

    Pages through the store newest first with the ``before`` cursor, ``page_size``
    outcomes at a time, so memory stays flat however many outcomes match.

    Returns:
        The number of outcomes written.

    Raises:
        netcortex.errors.StoreError: the store cannot be opened or read.
        OSError: ``out`` cannot be written.
    """
    store = read_store(config)
    await store.start()
    written = 0
    page_query = replace(query, limit=max(1, page_size), before=None)
    try:
        while True:
            page = await store.query(page_query)
            for outcome in page:
                out.write(json.dumps(outcome_to_dict(outcome), ensure_ascii=False) + "\n")
            written += len(page)
            if len(page) < page_query.limit:
                return written
            page_query = replace(page_query, before=OutcomeCursor.after(page[-1]))
    finally:
        await store.close()


def _export(config: Config, query: OutcomeQuery, target: str) -> int:
    """``--export TARGET``: JSON lines to a file (or stdout for ``-``), then a summary line."""
    try:
        if target == "-":
            count = _run_async(
                export_outcomes(config, query, sys.stdout, page_size=EXPORT_PAGE_SIZE)
            )
            sys.stdout.flush()
            summary = sys.stderr  # stdout carries the JSON lines only
        else:
            with Path(target).open("w", encoding="utf-8") as out:
                count = _run_async(export_outcomes(config, query, out, page_size=EXPORT_PAGE_SIZE))
            summary = sys.stdout
    except NetcortexError as exc:
        print(f"netcortex outcomes: cannot read {_store_where(config)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"netcortex outcomes: cannot write {target}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    noun = "outcome" if count == 1 else "outcomes"
    print(f"exported {count} {noun} to {target}", file=summary)
    return EXIT_OK


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
    if not _store_exists(config):
        print(
            f"netcortex outcomes: no outcome store at {config.store.sqlite_path} "
            f"(store.sqlite_path in {config.source}); has the engine run yet?",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.export is not None:
        return _export(config, query, args.export)
    try:
        outcomes = _run_async(query_outcomes(config, query))
    except NetcortexError as exc:
        print(f"netcortex outcomes: cannot read {_store_where(config)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        json.dump([outcome_to_dict(o) for o in outcomes], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        if outcomes:
            print(render_table(outcomes))
        print(_count_line(len(outcomes), query.limit))
    return EXIT_OK


# -- outbox (issue 7) ------------------------------------------------------------


class _NoOutbox(Exception):
    """The configured store holds no journal outbox (nothing was created)."""


async def outbox_status(config: Config, action: Callable[[Outbox], Awaitable[_T]]) -> _T:
    """Open the journal outbox beside the configured store, run ``action`` on it, close it.

    Never creates a store: the SQLite file must exist (checked by the caller), and on
    PostgreSQL the schema's ``journal_migrations`` ledger must exist before the
    outbox starts (``PostgresOutbox.start`` would otherwise create the table). Safe
    while the engine runs: reads take no lock a worker waits on, ``retry_dead`` is
    one short transaction.

    Raises:
        _NoOutbox: PostgreSQL has no journal outbox in the configured schema.
        netcortex.errors.StoreError: the store cannot be opened or read.
    """
    from netcortex.app import make_outbox

    if config.store.backend == "postgres" and (
        await _pg_ledger(config, "journal_migrations") is None
    ):
        raise _NoOutbox
    outbox = make_outbox(config.store)
    await outbox.start()
    try:
        return await action(outbox)
    finally:
        await outbox.close()


def _job_handler(job: JournalJob) -> str:
    """An outcome job's handler; ``incident:<rule>`` for an incident job (issue 8)."""
    if job.incident is not None:
        return f"incident:{job.incident.rule}"
    return "" if job.outcome is None else job.outcome.handler_id


def _job_severity(job: JournalJob) -> str:
    if job.incident is not None:
        return job.incident.severity.value
    return "" if job.outcome is None else job.outcome.severity.value


def render_jobs(jobs: Sequence[JournalJob]) -> str:
    """An aligned table of journal jobs: id, target, handler, severity, attempts, the
    next attempt (pending) or when it finished, and the last error (unpadded, last)."""
    header = ("JOB ID", "TARGET", "HANDLER", "SEVERITY", "ATTEMPTS", "NEXT/FINISHED (UTC)")
    rows = [
        (
            j.job_id,
            j.about,
            _job_handler(j),
            _job_severity(j),
            str(j.attempts),
            _fmt_time(j.finished_at if j.finished_at is not None else j.next_attempt_at),
            " ".join(j.last_error.split()) or "-",
        )
        for j in jobs
    ]
    table = ((*header, "LAST ERROR"), *rows)
    return align(table)


def _cmd_outbox(args: argparse.Namespace) -> int:
    _quiet_logging()
    if args.limit < 1:
        print("netcortex outbox: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    where = _store_where(config)
    missing = (
        f"netcortex outbox: no journal outbox in {where} ({config.source}); has the engine run yet?"
    )
    if not _store_exists(config):
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    if not config.journal.enabled:
        print(
            f"netcortex outbox: note: journal.enabled is false in {config.source}; "
            "no new jobs are queued and nothing is delivered",
            file=sys.stderr,
        )
    try:
        if args.retry_dead is not None:
            ids = list(dict.fromkeys(args.retry_dead)) or None
            requeued = _run_async(outbox_status(config, lambda o: o.retry_dead(ids)))
        elif args.list is not None:
            state = JobState(args.list)
            jobs = _run_async(outbox_status(config, lambda o: o.jobs(state, args.limit)))
        else:
            stats = _run_async(outbox_status(config, lambda o: o.stats()))
    except _NoOutbox:
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    except NetcortexError as exc:
        print(f"netcortex outbox: cannot read {where}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.retry_dead is not None:
        return _report_requeued(requeued, ids, json_out=args.json)
    if args.list is not None:
        if args.json:
            json.dump([job_dict(j) for j in jobs], sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
            return EXIT_OK
        if jobs:
            print(render_jobs(jobs))
        noun = "job" if len(jobs) == 1 else "jobs"
        line = f"{len(jobs)} {state.value} {noun}, oldest first"
        if len(jobs) >= args.limit:
            line += f" (limit {args.limit} reached; raise --limit to see more)"
        print(line)
        return EXIT_OK
    now = datetime.now(UTC)
    if args.json:
        json.dump(outbox_dict(stats, now), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(outbox_line(stats, now))
    return EXIT_OK


def _report_requeued(requeued: int, ids: list[str] | None, *, json_out: bool) -> int:
    """Print what ``--retry-dead`` did; 1 when some given ids were not dead jobs."""
    if json_out:
        json.dump({"requeued": requeued}, sys.stdout)
        sys.stdout.write("\n")
    else:
        noun = "job" if requeued == 1 else "jobs"
        print(f"requeued {requeued} dead {noun}")
    if ids is not None and requeued < len(ids):
        print(
            f"netcortex outbox: {len(ids) - requeued} of the {len(ids)} given job ids "
            "are not dead jobs (see 'netcortex outbox --list dead')",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _add_outbox_parser(sub: Any) -> None:
    outbox = sub.add_parser(
        "outbox",
        help="the NetBox journal outbox: counts, jobs, requeue dead letters",
        description=(
            "Show the NetBox journal outbox kept beside the outcomes (store.backend: the "
            "SQLite file store.sqlite_path or the PostgreSQL schema): how many journal "
            "jobs are pending (with the oldest one's age), delivered and dead-lettered; "
            "list the jobs of one state; or requeue dead jobs after fixing what killed "
            "them (a device or interface missing in NetBox, an entry NetBox rejected, a "
            "job older than journal.max_age_seconds; a running engine remembers a "
            "device missing in NetBox for up to a minute, so wait that long after adding "
            "it). Safe while the engine runs: a "
            "requeued job is picked up within journal.poll_interval_seconds. Never "
            "creates a store. Exit codes: 0 "
            "ok, 1 no outbox or the store cannot be read (or --retry-dead IDs that are "
            "not dead jobs), 2 usage or configuration error."
        ),
        epilog=(
            "Examples: netcortex outbox -c netcortex.yaml  →  3 pending (oldest 4m12s), "
            "1,204 delivered, 2 dead; netcortex outbox --list dead; netcortex outbox "
            "--list pending --limit 20 --json; netcortex outbox --retry-dead (every dead "
            "job); netcortex outbox --retry-dead JOB_ID [JOB_ID ...]"
        ),
    )
    outbox.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    action = outbox.add_mutually_exclusive_group()
    action.add_argument(
        "--list",
        choices=[s.value for s in JobState],
        metavar="STATE",
        help="list the jobs in STATE (pending, delivered or dead), oldest first",
    )
    action.add_argument(
        "--retry-dead",
        nargs="*",
        metavar="ID",
        help="requeue dead jobs as pending, due now: every one, or only the given job ids "
        "(the job id is the outcome id)",
    )
    outbox.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N jobs with --list (100)"
    )
    outbox.add_argument("--json", action="store_true", help="print JSON instead of text")
    outbox.set_defaults(func=_cmd_outbox)


# -- incidents (issue 8) ---------------------------------------------------------


class _NoIncidents(Exception):
    """The configured store holds no incident tables (nothing was created)."""


#: Incidents read per page when ``--id`` is a prefix (the store is walked newest first).
_FIND_PAGE_SIZE = 1000
#: Shortest ``--id`` prefix looked up (the table shows 12 characters).
_MIN_ID_PREFIX = 6
#: Characters of the id the table shows.
_SHORT_ID = 12


def _sqlite_has_incidents(path: Path) -> bool:
    """Whether the SQLite file holds the ``incidents`` table, read-only (creates nothing).

    Raises:
        StoreError: the file cannot be read.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incidents'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    return row is not None


async def incident_status(config: Config, action: Callable[[IncidentStore], Awaitable[_T]]) -> _T:
    """Open the incident store beside the configured store, run ``action`` on it, close it.

    Never creates a store: the SQLite file must exist (checked by the caller) and
    hold the ``incidents`` table; on PostgreSQL the schema's ``incident_migrations``
    ledger must exist before the store starts (``start`` would otherwise create the
    tables). Safe while the engine runs (reads only).

    Raises:
        _NoIncidents: the store has no incident tables (the engine never correlated).
        netcortex.errors.StoreError: the store cannot be opened or read.
    """
    from netcortex.app import make_incident_store

    if config.store.backend == "postgres":
        if await _pg_ledger(config, "incident_migrations") is None:
            raise _NoIncidents
    elif not _sqlite_has_incidents(Path(config.store.sqlite_path)):
        raise _NoIncidents
    store = make_incident_store(config.store)
    await store.start()
    try:
        return await action(store)
    finally:
        await store.close()


async def find_incident(store: IncidentStore, wanted: str) -> list[Incident]:
    """The incident with id ``wanted``, else those whose id starts with it (at most two
    are returned: enough to tell a unique prefix from an ambiguous one). A prefix walks
    the store newest first, ``_FIND_PAGE_SIZE`` incidents at a time."""
    exact = await store.get(wanted)
    if exact is not None:
        return [exact]
    if len(wanted) < _MIN_ID_PREFIX:
        return []
    from netcortex.contracts.incidents import IncidentQuery

    found: list[Incident] = []
    query = IncidentQuery(limit=_FIND_PAGE_SIZE)
    while True:
        page = await store.query(query)
        found.extend(i for i in page if i.incident_id.startswith(wanted))
        if len(found) > 1 or len(page) < _FIND_PAGE_SIZE:
            return found[:2]
        last = page[-1]
        query = replace(query, before=IncidentCursor(last.updated_at, last.incident_id))


def _age_or_resolved(incident: Incident, now: datetime) -> str:
    if incident.resolved_at is not None:
        return _fmt_time(incident.resolved_at)
    return fmt_age((now - incident.opened_at).total_seconds())


def render_incidents(incidents: Sequence[Incident], now: datetime) -> str:
    """An aligned table of incidents: short id, state, rule, root, severity, member and
    evidence counts, when it opened, its age (open) or when it resolved, the summary."""
    header = (
        "ID",
        "STATE",
        "RULE",
        "ROOT",
        "SEVERITY",
        "MEMBERS",
        "EVIDENCE",
        "OPENED (UTC)",
        "AGE/RESOLVED",
    )
    rows = [
        (
            i.incident_id[:_SHORT_ID],
            i.state.value + (" (flapping)" if i.flapping else ""),
            i.rule,
            i.root,
            i.severity.value,
            str(len(i.members)),
            str(len(i.evidence)),
            _fmt_time(i.opened_at),
            _age_or_resolved(i, now),
            " ".join(i.summary.split()),
        )
        for i in incidents
    ]
    table = ((*header, "SUMMARY"), *rows)
    return align(table)


def render_incident(incident: Incident, now: datetime) -> str:
    """One incident in full: every field on its own line, the lists one item a line."""
    i = incident
    state = i.state.value
    if i.flapping is not None:
        state += ", flapping" if i.flapping else ", stabilised"
    lines = [
        f"incident  {i.incident_id}",
        f"state     {state} (version {i.version})",
        f"rule      {i.rule}",
        f"root      {i.root}",
        f"severity  {i.severity.value}",
        f"site      {i.site or '-'}",
        f"summary   {' '.join(i.summary.split())}",
        f"opened    {_fmt_time(i.opened_at)} ({fmt_age((now - i.opened_at).total_seconds())} ago)",
        f"updated   {_fmt_time(i.updated_at)}",
        f"resolved  {'-' if i.resolved_at is None else _fmt_time(i.resolved_at)}",
    ]
    inhibited = set(i.inhibited)
    for title, items in (("members", i.members), ("evidence", i.evidence)):
        lines.append(f"{title} ({len(items)}):")
        for item in items:
            mark = "  (inhibited)" if title == "evidence" and item in inhibited else ""
            lines.append(f"  {item}{mark}")
    if i.details:
        lines.append("details:")
        lines.extend(
            f"  {k}: {json.dumps(v, ensure_ascii=False, default=str)}"
            for k, v in sorted(i.details.items())
        )
    return "\n".join(lines)


def _cmd_incidents(args: argparse.Namespace) -> int:
    _quiet_logging()
    name = "netcortex incidents"
    try:
        query = incident_query(
            state=args.state,
            rule=args.rule,
            site=args.site,
            device=args.device,
            since=args.since,
            limit=args.limit,
            names=CLI_QUERY_NAMES,
        )
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    wanted = (args.id or "").strip()
    if args.id is not None and not wanted:
        print(f"{name}: --id needs an incident id (or a prefix of it)", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    where = _store_where(config)
    missing = (
        f"{name}: no incidents in {where} ({config.source}); has the engine run with "
        "correlation (association) on?"
    )
    if not _store_exists(config):
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    try:
        if wanted:
            found = _run_async(incident_status(config, lambda s: find_incident(s, wanted)))
        else:
            incidents = _run_async(incident_status(config, lambda s: s.query(query)))
    except _NoIncidents:
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    except NetcortexError as exc:
        print(f"{name}: cannot read {where}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    now = datetime.now(UTC)
    if wanted:
        if len(found) != 1:
            why = "no incident" if not found else "more than one incident"
            print(f"{name}: {why} with an id starting {wanted!r}", file=sys.stderr)
            return EXIT_FAILURE
        if args.json:
            json.dump(incident_dict(found[0]), sys.stdout, indent=2, ensure_ascii=False)
            sys.stdout.write("\n")
        else:
            print(render_incident(found[0], now))
        return EXIT_OK
    if args.json:
        json.dump([incident_dict(i) for i in incidents], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    if incidents:
        print(render_incidents(incidents, now))
    noun = "incident" if len(incidents) == 1 else "incidents"
    line = f"{len(incidents)} {noun}, newest change first"
    if len(incidents) >= query.limit:
        line += f" (limit {query.limit} reached; raise --limit to see more)"
    print(line)
    return EXIT_OK


def _add_incidents_parser(sub: Any) -> None:
    from netcortex.contracts.incidents import INCIDENT_RULES, IncidentState

    inc = sub.add_parser(
        "incidents",
        help="list correlated incidents, or show one",
        description=(
            "List the incidents the correlator made of the outcomes (one per cable cut, "
            "device reboot, BGP drop over a failed link, site outage or flapping port), "
            "newest change first, from the incident store beside the outcomes "
            "(store.backend: the SQLite file store.sqlite_path or the PostgreSQL "
            "schema); or show one with its members and evidence (--id; a unique prefix "
            "of at least 6 characters, such as the table's short id, will do). Safe "
            "while the engine runs; never creates a store. Exit codes: 0 ok, 1 no "
            "incident store, the store cannot be read or no such incident, 2 usage or "
            "configuration error."
        ),
        epilog=(
            "Examples: netcortex incidents -c netcortex.yaml --state open; netcortex "
            "incidents --rule cable_pair --since 1d; netcortex incidents --device sw1-north "
            "--json; netcortex incidents --site branch-west --limit 20; netcortex "
            "incidents --id 3fa2c1d09e4b"
        ),
    )
    inc.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    inc.add_argument(
        "--id",
        metavar="ID",
        help="show this incident in full (its id, or a unique prefix of 6+ characters); "
        "the filters are then ignored",
    )
    inc.add_argument(
        "--state",
        choices=[s.value for s in IncidentState],
        help="only open or only resolved incidents",
    )
    inc.add_argument(
        "--rule",
        choices=sorted(INCIDENT_RULES),
        metavar="RULE",
        help=f"only this rule: {', '.join(sorted(INCIDENT_RULES))}",
    )
    inc.add_argument("--site", metavar="SITE", help="only this site slug (e.g. branch-west)")
    inc.add_argument(
        "--device", metavar="DEVICE", help="only incidents involving this device (member or root)"
    )
    inc.add_argument(
        "--since",
        metavar="WHEN",
        help="changed at or after: 30s, 10m, 2h, 1d, 1w ago, or ISO-8601",
    )
    inc.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N rows (default 100)"
    )
    inc.add_argument("--json", action="store_true", help="print JSON instead of text")
    inc.set_defaults(func=_cmd_incidents)


# -- maintenance -----------------------------------------------------------------


def _window_from_args(args: argparse.Namespace, now: datetime | None = None) -> MaintenanceWindow:
    """The window ``maintenance add`` describes; every problem named by its option.

    Raises:
        UsageError: one line per problem.
    """
    return build_window(
        id=args.id,
        scope=args.scope,
        target=args.target,
        start=args.start,
        end=args.end,
        duration=args.duration,
        rrule=args.rrule,
        timezone=args.timezone,
        reason=args.reason,
        names=CLI_WINDOW_NAMES,
        now=now,
    )


def render_windows(rows: Sequence[dict[str, Any]]) -> str:
    """An aligned table of ``views.window_dict`` rows (the reason last, unpadded)."""
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
    return align(table)


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


def _store_exists(config: Config) -> bool:
    """Whether the store may hold something (a SQLite file that exists; PostgreSQL: always)."""
    return config.store.backend == "postgres" or Path(config.store.sqlite_path).exists()


def _windows_stored(config: Config) -> bool:
    """Whether run-time windows may be stored, checked without creating anything: the
    SQLite file exists, or the PostgreSQL schema holds the maintenance tables.

    Raises:
        StoreError: PostgreSQL cannot be reached.
    """
    if config.store.backend != "postgres":
        return Path(config.store.sqlite_path).exists()
    return _run_async(_pg_ledger(config, "maintenance_migrations")) is not None


async def _pg_ledger(config: Config, ledger: str) -> int | None:
    """The version in the configured schema's ``ledger`` (``None``: no such table)."""
    from netcortex.pg import create_pool, ledger_version, pg_errors

    store = config.store
    assert store.postgres_dsn is not None  # validated by StoreConfig
    where = _store_where(config)
    pool = await create_pool(
        store.postgres_dsn.get_secret_value(), where=where, min_size=1, max_size=1, timeout=10
    )
    try:
        async with pg_errors("read", where), pool.acquire() as conn:
            return await ledger_version(conn, schema=store.postgres_schema, ledger=ledger)
    finally:
        pool.terminate()


def _store_where(config: Config) -> str:
    """The store's location for messages (never a password)."""
    store = config.store
    if store.backend == "postgres":
        assert store.postgres_dsn is not None  # validated by StoreConfig
        dsn = redact_dsn(store.postgres_dsn.get_secret_value())
        return f"postgres {dsn} schema {store.postgres_schema}"
    return f"sqlite {store.sqlite_path}"


async def _with_calendar(
    config: Config, windows: Sequence[MaintenanceWindow], action: Callable[[Any], Any]
) -> Any:
    """Open the calendar the engine uses (the store's location + config windows), run ``action``."""
    from netcortex.app import make_calendar

    calendar = make_calendar(config, windows, reload_interval=0)
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
    span = f"{fmt_local(window.start, window.timezone)} .. {fmt_local(window.end, window.timezone)}"
    repeat = f", repeating {window.rrule}" if window.rrule else ""
    print(
        f"{verb} maintenance window {window.id}: {window.scope} {window.target}, "
        f"{span} ({window.timezone}{repeat}) in {_store_where(config)}"
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
    try:
        stored = _windows_stored(config)
    except StoreError as exc:
        print(f"netcortex maintenance list: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if stored:

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
    rows = window_rows(windows, config_ids, at)
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
    try:
        stored = _windows_stored(config)
    except StoreError as exc:
        print(f"netcortex maintenance remove: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if stored:

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
            f"{_store_where(config)} (see 'netcortex maintenance list')",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"removed maintenance window {args.id}")
    return EXIT_OK


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    _quiet_logging()
    config = _load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE

    async def upgrade() -> None:
        from netcortex.app import make_calendar, make_incident_store, make_poll_state, make_store
        from netcortex.metrics import Registry

        store = make_store(config.store, Registry())
        await store.start()  # applies the schema migrations
        await store.close()
        # The maintenance windows live beside the outcomes (same file or schema).
        calendar = make_calendar(config, (), reload_interval=0)
        await calendar.start()
        await calendar.close()
        incidents = make_incident_store(config.store)  # the correlator's incidents (issue 8)
        await incidents.start()
        await incidents.close()
        if config.store.backend == "postgres" or config.poll.enabled:
            state = make_poll_state(config)  # the poller's state (its own migrations)
            await state.start()
            await state.close()

    if config.store.backend == "postgres":
        from netcortex.memory.episodic.postgres import SCHEMA_VERSION

        where = _store_where(config)
    else:
        from netcortex.memory.episodic.sqlite import SCHEMA_VERSION

        where = f"sqlite {config.store.sqlite_path}"
    try:
        _run_async(upgrade())
    except NetcortexError as exc:
        print(f"netcortex db upgrade: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"outcome store up to date: {where}, schema version {SCHEMA_VERSION}")
    beside = ["maintenance windows", "incidents"]
    if config.store.backend == "postgres" or config.poll.enabled:
        beside.append("poll state")
    print(f"also up to date: {', '.join(beside)}")
    return EXIT_OK


# -- graph ----------------------------------------------------------------------------


class _GraphStalled(Exception):
    """The graph took nothing for too long during a backfill (down, refusing)."""


async def backfill_graph(
    config: Config,
    since: datetime | None,
    *,
    page_size: int = EXPORT_PAGE_SIZE,
    progress: TextIO | None = None,
) -> tuple[int, int]:
    """Mirror the stored outcomes recorded at or after ``since`` (all when ``None``)
    into the configured graph (``graph.*``), newest first, page by page.

    Idempotent (the mirror MERGEs), so it can be re-run or overlap the running
    engine's own mirroring. At most ``20 * graph.batch_size`` outcomes wait for the
    graph at once, so nothing overflows the mirror's queue.

    Returns:
        ``(read, written)``: outcomes read from the store, outcomes written.

    Raises:
        netcortex.errors.StoreError: the store cannot be opened or read.
        _GraphStalled: the graph wrote nothing for ``max(10, 3 * graph.timeout_seconds)``
            seconds (its failures were logged as ``graph_write_failed``).
    """
    from netcortex.memory.episodic.graph import GraphMirror
    from netcortex.metrics import Counter, Registry

    registry = Registry()
    mirror = GraphMirror(config.graph, registry)
    written_total = registry.get("netcortex_graph_written_total")
    assert isinstance(written_total, Counter)
    stall = max(10.0, 3 * config.graph.timeout_seconds)
    cap = 20 * config.graph.batch_size
    store = read_store(config)
    await store.start()
    read = 0
    last, last_change = 0.0, asyncio.get_running_loop().time()

    async def wait_below(limit: int) -> None:
        nonlocal last, last_change
        loop = asyncio.get_running_loop()
        while mirror.backlog > limit:
            if written_total.value() != last:
                last, last_change = written_total.value(), loop.time()
            elif loop.time() - last_change > stall:
                raise _GraphStalled(f"the graph took nothing for {stall:g}s")
            await asyncio.sleep(0.01)

    try:
        await mirror.start()
        page_query = OutcomeQuery(since=since, limit=max(1, page_size))
        while True:
            page = await store.query(page_query)
            for outcome in page:
                mirror.submit(outcome)
                read += 1
                if mirror.backlog >= cap:
                    await wait_below(cap // 2)
            if progress is not None:
                progress.write(
                    f"graph backfill: {read} read, {int(written_total.value())} written\n"
                )
                progress.flush()
            if len(page) < page_query.limit:
                break
            page_query = replace(page_query, before=OutcomeCursor.after(page[-1]))
        await wait_below(0)
    finally:
        await mirror.close()
        await store.close()
    return read, int(written_total.value())


def _cmd_graph_backfill(args: argparse.Namespace) -> int:
    _quiet_logging()
    if args.hours is not None and args.hours <= 0:
        print("netcortex graph backfill: --hours must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        since = (
            datetime.now(UTC) - timedelta(hours=args.hours)
            if args.hours is not None
            else (parse_time(args.since) if args.since else None)
        )
    except UsageError as exc:
        print(f"netcortex graph backfill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config, sys.stderr)
    if config is None:
        return EXIT_USAGE
    if not config.graph.enabled:
        print(
            f"netcortex graph backfill: graph.enabled is false in {config.source}; "
            "configure the graph section first (graph.enabled, graph.uri ...)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not _store_exists(config):
        print(
            f"netcortex graph backfill: no outcome store at {_store_where(config)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    from netcortex.logs import redact_url

    where = redact_url(config.graph.uri)
    try:
        read, written = _run_async(backfill_graph(config, since, progress=sys.stderr))
    except NetcortexError as exc:
        print(
            f"netcortex graph backfill: cannot read {_store_where(config)}: {exc}", file=sys.stderr
        )
        return EXIT_FAILURE
    except _GraphStalled as exc:
        print(f"netcortex graph backfill: {where}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    noun = "outcome" if read == 1 else "outcomes"
    print(f"mirrored {written} of {read} {noun} to {where}")
    return EXIT_OK if written >= read else EXIT_FAILURE


def _add_graph_parser(sub: Any) -> None:
    graph = sub.add_parser(
        "graph",
        help="graph mirror administration",
        description="Administration of the Bolt graph mirror (graph.* in the config).",
    )
    gsub = graph.add_subparsers(dest="graph_command", metavar="COMMAND", required=True)
    backfill = gsub.add_parser(
        "backfill",
        help="mirror stored outcomes into the graph",
        description=(
            "Read outcomes from the configured store, newest first, and write them to "
            "the graph named by graph.* (MERGE: safe to repeat, safe beside a running "
            "engine). A progress line per page goes to stderr, a summary to stdout; "
            "exits 1 when some could not be written."
        ),
    )
    backfill.add_argument("--config", "-c", metavar="FILE", help="config file (store and graph)")
    window = backfill.add_mutually_exclusive_group()
    window.add_argument(
        "--since",
        metavar="WHEN",
        help="recorded at or after: 30m, 6h, 2d ago, or ISO-8601 (default: everything)",
    )
    window.add_argument("--hours", type=float, metavar="N", help="the last N hours")
    backfill.set_defaults(func=_cmd_graph_backfill)


def _add_maintenance_parser(sub: Any) -> None:
    maint = sub.add_parser(
        "maintenance",
        help="add, list or remove maintenance windows",
        description=(
            "Manage maintenance windows. Inside a window, outcomes for the covered "
            "targets are recorded as 'suppressed' (what would have fired stays on "
            "record) and facts still active when it ends get their normal outcome then. "
            "Windows added here are stored beside the outcomes (store.sqlite_path, or "
            "the PostgreSQL schema with store.backend: postgres); a "
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
            "receiver and the HTTP server (API under /api/v1, Meraki webhooks at "
            "/webhooks/meraki). Logs one 'listening' event per listener. SIGINT or SIGTERM "
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
    run.add_argument(
        "--record",
        metavar="FILE",
        help=(
            "append every sensory event to FILE as JSON lines (one event object with "
            "its received_at per line) for 'netcortex replay'"
        ),
    )
    run.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help=(
            "what this process does (default: engine.role, else all): 'receiver' runs "
            "traps, webhooks and pollers and publishes to JetStream; 'worker' runs "
            "reflexes, store, correlation, outbox and the API; both need bus.backend: nats"
        ),
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
            "List reflex outcomes from the configured store (store.backend: the SQLite "
            "file store.sqlite_path or PostgreSQL store.postgres_dsn), newest "
            "first, as a table (default) or a JSON array. Safe while the engine runs."
        ),
        epilog=(
            "Examples: netcortex outcomes --since 10m --severity high,critical; "
            "netcortex outcomes --handler link_down --device 192.0.2.11 --json; "
            "netcortex outcomes --site branch-west --kind suppressed"
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
    outc.add_argument("--site", metavar="SITE", help="only this site slug (e.g. branch-west)")
    outc.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N rows (default 100)"
    )
    output = outc.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON array of outcome objects")
    output.add_argument(
        "--export",
        metavar="FILE",
        help=(
            "write every matching outcome (ignoring --limit) to FILE as JSON lines, "
            "one outcome object per line, for archiving; '-' writes to stdout"
        ),
    )
    outc.set_defaults(func=_cmd_outcomes)

    _add_maintenance_parser(sub)
    _add_graph_parser(sub)
    _add_outbox_parser(sub)
    _add_incidents_parser(sub)
    from netcortex.bridge.demo import add_demo_parser

    add_demo_parser(sub)
    add_replay_parser(sub)
    from netcortex.bridge.tail import add_tail_parser

    add_tail_parser(sub)

    db = sub.add_parser(
        "db",
        help="outcome store administration",
        description="Outcome store administration.",
    )
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = dbsub.add_parser(
        "upgrade",
        help="apply the outcome store's schema migrations",
        description=(
            "Create the outcome store named by the config (store.backend: sqlite or "
            "postgres) if needed and apply its schema migrations, then exit. "
            "`netcortex run` does the same at start; run this first when several "
            "workers share one PostgreSQL. Safe to repeat."
        ),
    )
    upgrade.add_argument("--config", "-c", metavar="FILE", help="config file naming the store")
    upgrade.set_defaults(func=_cmd_db_upgrade)

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
