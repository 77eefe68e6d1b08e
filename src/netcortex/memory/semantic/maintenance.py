"""Memory, semantic: the maintenance calendar — maintenance windows, indexed per target.

Window semantics (issue 3, item 4):

* **Bounds.** Every occurrence is ``[start, end)``: ``start`` inclusive, ``end``
  exclusive, whole seconds (sub-second bounds are refused, so "10:00:00 to
  12:00:00" means exactly that, on every backend and in the CLI).
* **One-off** windows (``rrule`` is ``None``) are the instants ``[start, end)``.
* **Recurring** windows repeat the first occurrence with an RFC 5545 RRULE
  (python-dateutil's ``rrulestr``), evaluated in the window's IANA ``timezone``
  (``zoneinfo``) on **local wall-clock time**: a Sunday 02:30 window starts at
  02:30 local every Sunday, whether that is CET or CEST.

  - **Duration is absolute elapsed time**: ``end - start`` of the first
    occurrence, as instants. Every occurrence lasts exactly that long, so on a
    DST day an occurrence may end at a different *local* time (a 01:00-05:00
    window lasts 4 h and ends at 06:00 local on the spring-forward day, at 04:00
    on the fall-back day). An operator asking for "4 hours of maintenance" gets
    4 hours, never 3 or 5.
  - **Nonexistent local start** (inside the spring-forward gap, e.g. 02:30 in
    Europe/Amsterdam on the last Sunday of March): shifted **forward by the gap
    length**, as RFC 5545 section 3.3.5 specifies (the local time is read with
    the UTC offset from before the gap, which is PEP 495's ``fold=0``): 02:30
    becomes 03:30 CEST (01:30 UTC).
  - **Ambiguous local start** (inside the fall-back repeat, e.g. 02:30 on the last
    Sunday of October): the **first** of the two instants (the DST one, 00:30
    UTC), again as RFC 5545 specifies.
  - ``UNTIL`` may be given in UTC (``...Z``, as RFC 5545 requires with a time
    zone) or as a local date/time; ``COUNT`` counts occurrences. A window whose
    rule is exhausted covers nothing afterwards.
  - ``DTSTART`` comes from ``start`` and may not appear in the rule; only one
    ``RRULE`` line (no ``RDATE``/``EXDATE``); ``FREQ`` must be ``HOURLY`` or
    coarser (maintenance is not a per-minute affair, and sub-hour rules would
    make occurrence tables large); ``INTERVAL`` and ``COUNT`` are 1 or more
    (``INTERVAL=0`` repeats the start forever).
  - **Cost.** ``recurrence_problems`` refuses rules that would stall the event
    loop while the calendar evaluates them: occurrences less than an hour apart
    (``BYMINUTE`` lists), more than ``MAX_PAST_REPETITIONS`` of them before now,
    or none within ``RECURRENCE_HORIZON`` (a rule that never matches makes
    dateutil walk to year 9999). It probes the rule on a thread for up to
    ``PROBE_BUDGET`` s, so it runs where windows come in (``config_windows``,
    ``add``, the CLI/API edge), never in ``validate_window`` (every reload).

* **Scopes.** A window matches an event when its scope names the event's device,
  interface (``device|interface``), site, role or one of its tags. The caller
  passes the site, role and tags of the event's device (from semantic memory):
  a site window therefore covers that site's devices and their interfaces, and a
  device window covers its interfaces; the calendar needs no inventory.
* **Overlaps.** When several windows cover the target, ``active`` returns the one
  whose current occurrence **ends last** (ties: the smallest id). That is the
  window that decides when suppression lifts, so the decision trace never names
  a window that ends while the target stays suppressed by another.

Cost: ``active`` looks up one bucket per scope in a dict keyed by target, so it
costs O(windows of this target), never a scan of all windows (the counter
``netcortex_maintenance_windows_examined_total`` proves it in tests). For a
recurring window, "is ``at`` inside an occurrence?" is a bisect in the window's
table of local occurrence starts (grown lazily from the rrule), and the answer is
memoised for the interval up to the window's next start or end, so a steady clock
costs one comparison per window per event.

Storage: config windows are given at construction (config-owned: never written,
never removable through ``remove``); windows added at run time are kept durably
by a ``WindowStorage`` (``maintenance_storage.py``): a ``maintenance_windows``
table in the SQLite file of the outcome store (``SqliteMaintenanceCalendar``) or
in the PostgreSQL schema of the outcome store (``PostgresMaintenanceCalendar``),
following ``store.backend``. Every driver error is mapped to ``StoreError``.

Live reload: windows added or removed by another connection (``netcortex
maintenance add|remove`` or the API while the engine runs, or a second engine on
the same store) take effect without a restart. After ``start`` a background task
asks the storage every ``reload_interval`` seconds (1 s by default) whether
another writer changed the table — one cheap read when nothing changed (SQLite:
``PRAGMA data_version``; PostgreSQL: a trigger-maintained change counter). When
it changed, the table is read and compared row by row with what the index holds;
unchanged windows keep their compiled entry (and its memo), and the new index is
swapped in at once, so a lookup sees either the old or the new set, never a mix.
With SQLite, outcome writes to the same file also move ``data_version``; they
cost one read of the (small) window table and no index change.

May import: ``contracts``, ``errors``, ``config``, ``metrics``, ``pg``.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from dateutil.rrule import rrule, rrulestr
from pydantic import (
    ValidationError,
)

from netcortex.config import MaintenanceConfig, MaintenanceWindowConfig
from netcortex.contracts.memory import MAINTENANCE_SCOPES, MaintenanceWindow
from netcortex.errors import ConfigError, StoreError
from netcortex.memory.semantic.maintenance_storage import (
    PostgresWindowStorage,
    SqliteWindowStorage,
    WindowStorage,
)
from netcortex.metrics import Registry

__all__ = [
    "MAX_PAST_REPETITIONS",
    "PROBE_BUDGET",
    "RECURRENCE_HORIZON",
    "PostgresMaintenanceCalendar",
    "SqliteMaintenanceCalendar",
    "StoredMaintenanceCalendar",
    "config_windows",
    "recurrence_problems",
    "validate_window",
    "window_problems",
    "windows_from_config",
]

log = structlog.get_logger(__name__)


#: A window id: one plain token (letters, digits, ``.``, ``_``, ``-``; 1..64 chars).
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FREQ_RE: Final = re.compile(r"(?:^|;)FREQ=(?:MINUTELY|SECONDLY)(?:;|$)", re.IGNORECASE)
_UNTIL_UTC_RE: Final = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
#: Larger than any UTC-offset change in the tz database (2 h): bounds the local-time search.
_SLACK: Final = timedelta(hours=3)
#: No boundary of an occurrence before the searched range is later than ``at - _SAFE``.
_SAFE: Final = timedelta(hours=1)
#: Default seconds between two checks for windows changed by another connection.
_RELOAD_INTERVAL_S: Final = 1.0

#: Most occurrences (or, for rules that skip, repetitions of FREQ x INTERVAL) a
#: recurring window may have between its start and now: the calendar walks them
#: all (in the engine's event loop) the first time it evaluates the window.
MAX_PAST_REPETITIONS: Final = 20_000
#: A recurring window must have an occurrence this soon (unless its rule ends first):
#: looking for the next occurrence of a rule that never matches (``BYMONTHDAY=30``
#: in February) walks every day until year 9999, seconds of a blocked loop.
RECURRENCE_HORIZON: Final = timedelta(days=3653)
#: Longest the occurrence walk of ``recurrence_problems`` may take (seconds).
PROBE_BUDGET: Final = 1.0
#: Occurrences closer together than this make the window sub-hourly (the calendar's
#: "FREQ=HOURLY or coarser", also through BYMINUTE / BYSECOND lists).
_MIN_GAP: Final = timedelta(hours=1)
#: Occurrences after now whose spacing is checked.
_AHEAD: Final = 64
#: The length of one repetition of each FREQ, at least (what ``rrule`` steps by).
_FREQ_STEP: Final = {
    "YEARLY": timedelta(days=365),
    "MONTHLY": timedelta(days=28),
    "WEEKLY": timedelta(days=7),
    "DAILY": timedelta(days=1),
    "HOURLY": timedelta(hours=1),
}
_RULE_PART: Final = re.compile(r"([A-Za-z]+)=([^;]*)")
_TOO_FAR_BACK: Final = (
    f"more than {MAX_PAST_REPETITIONS} occurrences of the rule lie between start and now; "
    "give a recent occurrence as start"
)

# ------------------------------------------------------------------ validation


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def _parse_rule(text: str, start: datetime, zone: ZoneInfo) -> rrule:
    """Parse one RRULE with ``start`` (in ``zone``) as its local, floating DTSTART.

    Raises:
        ValueError: not one valid RRULE, or it names DTSTART, or it repeats faster
            than hourly, or its INTERVAL or COUNT is below 1.
    """
    body = text.strip()
    if "\n" in body or "\r" in body:
        raise ValueError("rrule must be one RRULE line (no DTSTART, RDATE or EXDATE lines)")
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:") :]
    if not body.upper().startswith("FREQ=") and ";FREQ=" not in body.upper():
        raise ValueError(f"rrule {text!r} has no FREQ (e.g. 'FREQ=WEEKLY;BYDAY=SU')")
    if "DTSTART" in body.upper() or "TZID" in body.upper():
        raise ValueError(
            "rrule may not contain DTSTART or TZID (they come from start and timezone)"
        )

    def local_until(match: re.Match[str]) -> str:
        # RFC 5545: with a time zone, UNTIL is given in UTC; the rule runs on floating
        # local time here, so UNTIL becomes the same instant in local wall time.
        instant = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return "UNTIL=" + instant.astimezone(zone).strftime("%Y%m%dT%H%M%S")

    body = _UNTIL_UTC_RE.sub(local_until, body)
    dtstart = start.astimezone(zone).replace(tzinfo=None)
    try:
        rule = rrulestr(body, dtstart=dtstart)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"invalid rrule {text!r}: {exc}") from exc
    if not isinstance(rule, rrule):
        raise ValueError(f"rrule {text!r} must be a single RRULE")  # noqa: TRY004 - a bad value
    if _FREQ_RE.search(body) is not None:
        raise ValueError(f"rrule {text!r} repeats faster than hourly (FREQ=HOURLY or coarser)")
    # As parsed (the last of repeated parts wins, as in dateutil): INTERVAL=0 repeats
    # the start forever (iterating the rule never ends), COUNT=0 or less never occurs.
    interval: int = getattr(rule, "_interval", 1)
    count: int | None = getattr(rule, "_count", None)
    if interval < 1:
        raise ValueError(
            f"rrule {text!r} has INTERVAL={interval}: it must be 1 or more "
            "(0 would repeat the start forever)"
        )
    if count is not None and count < 1:
        raise ValueError(f"rrule {text!r} has COUNT={count}: it must be 1 or more")
    return rule


def _problems(window: MaintenanceWindow) -> list[tuple[str, str]]:
    """Every ``(field, message)`` wrong with ``window`` (empty when it is valid)."""
    out: list[tuple[str, str]] = []
    if not isinstance(window.id, str) or not _ID_RE.fullmatch(window.id):
        out.append(("id", f"{window.id!r} is not a plain token (letters, digits, '.', '_', '-')"))
    if window.scope not in MAINTENANCE_SCOPES:
        out.append(("scope", f"{window.scope!r} is not one of {sorted(MAINTENANCE_SCOPES)}"))
    target = window.target
    if not isinstance(target, str) or not target.strip() or target != target.strip():
        out.append(("target", f"{target!r} must be a non-empty name without outer spaces"))
    elif window.scope == "interface":
        dev, sep, ifname = target.partition("|")
        if not (sep and dev and ifname) or "|" in ifname:
            out.append(("target", f"interface target {target!r} must be 'device|interface'"))
    elif "|" in target:
        out.append(("target", f"{window.scope} target {target!r} may not contain '|'"))
    bounds_ok = True
    for name in ("start", "end"):
        value = getattr(window, name)
        if not isinstance(value, datetime) or value.utcoffset() is None:
            out.append((name, f"must be a timezone-aware datetime, got {value!r}"))
            bounds_ok = False
        elif value.microsecond:
            out.append((name, f"must be whole seconds, got {value.isoformat()}"))
    # Compared in UTC: two datetimes sharing a tzinfo compare by wall clock (PEP 495).
    if bounds_ok and not window.start.astimezone(UTC) < window.end.astimezone(UTC):
        out.append(("end", f"end {window.end.isoformat()} is not after start"))
    zone: ZoneInfo | None = None
    try:
        zone = _zone(window.timezone)
    except ValueError as exc:
        out.append(("timezone", str(exc)))
    if window.rrule is not None and zone is not None and bounds_ok:
        try:
            _parse_rule(window.rrule, window.start, zone)
        except ValueError as exc:
            out.append(("rrule", str(exc)))
    if not isinstance(window.reason, str):
        out.append(("reason", "must be text"))
    return out


def window_problems(window: MaintenanceWindow) -> list[tuple[str, str]]:
    """Every ``(field, message)`` wrong with ``window``; empty when it is valid.

    Fields are the ``MaintenanceWindow`` attribute names (``id``, ``scope``,
    ``target``, ``start``, ``end``, ``rrule``, ``timezone``, ``reason``), so a
    caller (the CLI) can name its own option for each problem.
    """
    return _problems(window)


def validate_window(window: MaintenanceWindow) -> None:
    """Check ``window`` completely; say everything that is wrong at once.

    Raises:
        ValueError: ``field: message`` for every problem, joined with ``"; "``.
    """
    problems = _problems(window)
    if problems:
        detail = "; ".join(f"{f}: {m}" for f, m in problems)
        raise ValueError(f"invalid maintenance window {window.id!r}: {detail}")


# ------------------------------------------------------------------ recurrence cost


def recurrence_problems(
    window: MaintenanceWindow, *, now: datetime | None = None, budget: float = PROBE_BUDGET
) -> list[tuple[str, str]]:
    """What would make a valid recurring ``window`` expensive for the calendar.

    The calendar grows a table of occurrence starts from the window's start and
    looks for the next one after every lookup time, in the engine's event loop,
    so rules that would block it or fill its memory are refused here (for the API
    and the CLI alike):

    * ``INTERVAL`` or ``COUNT`` below 1 (``INTERVAL=0`` repeats the start forever:
      the calendar's table grows without end and the engine hangs);
    * more than ``MAX_PAST_REPETITIONS`` repetitions between start and now
      (``FREQ=HOURLY`` from year 1: 17 million occurrences, half a minute);
    * occurrences less than an hour apart (``FREQ=HOURLY;BYMINUTE=0,1,2`` is
      per-minute: the calendar's "hourly or coarser", dodged);
    * no occurrence after now within ``RECURRENCE_HORIZON`` while the rule has not
      ended, or none found within ``budget`` seconds: a rule that never matches
      (``BYMONTH=2;BYMONTHDAY=30``) makes python-dateutil walk every day up to
      year 9999, seconds each time the calendar looks for the next occurrence.

    The walk runs on a daemon thread for at most ``budget`` seconds (a rule that
    never matches cannot be stopped inside dateutil; that thread ends by itself
    at year 9999, a few seconds later). Ordinary rules take milliseconds.

    Callers: ``config_windows`` (config-file windows, at start),
    ``SqliteMaintenanceCalendar.add`` (on a worker thread) and the CLI/API edge
    (``bridge.views.build_window``). Not ``validate_window``: that runs on every
    reload and for every compiled window, and this costs a thread and milliseconds.

    Args:
        window: a window ``window_problems`` found nothing wrong with.
        now: the reference time (default: the current time).
        budget: seconds the walk may take before the rule is refused as too slow.

    Returns:
        ``("rrule" or "start", message)`` pairs; empty when the window is fine or
        not recurring.
    """
    if window.rrule is None:
        return []
    body = window.rrule.strip()
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:") :]
    parts = {k.upper(): v.strip() for k, v in _RULE_PART.findall(body)}
    problems: list[tuple[str, str]] = []
    for key in ("INTERVAL", "COUNT"):
        value = parts.get(key)
        if value is not None and (not value.isdigit() or int(value) < 1):
            problems.append(("rrule", f"{key}={value} must be a whole number of 1 or more"))
    if problems:
        return problems
    current = (now or datetime.now(UTC)).astimezone(UTC)
    step = _FREQ_STEP.get(parts.get("FREQ", "").upper())
    interval = int(parts.get("INTERVAL", "1"))
    if step is not None and (current - window.start) / (step * interval) > MAX_PAST_REPETITIONS:
        return [("start", _TOO_FAR_BACK)]
    count = int(parts["COUNT"]) if "COUNT" in parts else None
    found: list[list[tuple[str, str]]] = []

    def walk() -> None:
        try:
            found.append(_walk_occurrences(window, current, count))
        except (ValueError, OverflowError, TypeError) as exc:  # dateutil failing late
            found.append([("rrule", f"cannot be evaluated ({type(exc).__name__}: {exc})")])

    worker = threading.Thread(target=walk, name="rrule-probe", daemon=True)
    worker.start()
    worker.join(budget)
    if not found:
        return [
            (
                "rrule",
                f"finding its occurrences takes longer than {budget:g} s (does it ever match?)",
            )
        ]
    return found[0]


def _walk_occurrences(
    window: MaintenanceWindow, now: datetime, count: int | None
) -> list[tuple[str, str]]:
    """``recurrence_problems``' walk over the occurrences (see there)."""
    zone = _zone(window.timezone)
    # The calendar's own parser: the same rule, the same UNTIL rules.
    rule = _parse_rule(cast(str, window.rrule), window.start, zone)
    own_until: datetime | None = getattr(rule, "_until", None)  # dateutil keeps it there
    local_now = now.astimezone(zone).replace(tzinfo=None)
    cap = (max(now, window.start) + RECURRENCE_HORIZON).astimezone(zone).replace(tzinfo=None)
    # The same occurrences, but no further than cap (where the rule matches at all).
    probe = rule.replace(count=None, until=min(own_until, cap) if own_until else cap)
    ahead = 0
    previous: datetime | None = None
    for seen, occurrence in enumerate(probe, start=1):
        if previous is not None and occurrence - previous < _MIN_GAP:
            return [
                (
                    "rrule",
                    f"occurrences {previous:%Y-%m-%dT%H:%M:%S} and {occurrence:%H:%M:%S} are "
                    "less than an hour apart (repeat hourly or coarser)",
                )
            ]
        previous = occurrence
        if count is not None and seen >= count:
            return []  # the rule ends here
        if occurrence > local_now:
            ahead += 1
            if ahead >= _AHEAD:
                return []
        elif seen > MAX_PAST_REPETITIONS:
            return [("start", _TOO_FAR_BACK)]
    if ahead == 0 and not (own_until is not None and own_until <= cap):
        years = RECURRENCE_HORIZON.days // 365
        return [("rrule", f"the rule has no occurrence within {years} years of now")]
    return []


# ------------------------------------------------------------------ config


def _to_window(item: MaintenanceWindowConfig) -> MaintenanceWindow:
    """The contract value of one config entry; ``ValueError`` when the calendar refuses it."""
    start, end = item.bounds()
    window = MaintenanceWindow(
        id=item.id,
        scope=item.scope,
        target=item.target,
        start=start,
        end=end,
        rrule=item.rrule,
        timezone=item.timezone,
        reason=item.reason,
    )
    validate_window(window)
    return window


def _build(
    entries: Iterable[tuple[int, MaintenanceWindowConfig]],
    source: str,
    problems: list[tuple[str, str, str]],
    now: datetime | None,
) -> list[MaintenanceWindow]:
    """Windows of the valid ``entries``; adds one problem per refused window or duplicate id,
    and one per ``recurrence_problems`` finding (``maintenance.windows.<i>.<field>``)."""
    out: list[MaintenanceWindow] = []
    seen: dict[str, int] = {}
    current = now or datetime.now(UTC)  # one reference time for every window
    for i, item in entries:
        key = f"maintenance.windows.{i}"
        try:
            window = _to_window(item)
        except ValueError as exc:
            problems.append((source, key, str(exc)))
            continue
        if window.id in seen:
            problems.append(
                (source, f"{key}.id", f"duplicate id {window.id!r} (also entry {seen[window.id]})")
            )
            continue
        seen[window.id] = i
        costly = recurrence_problems(window, now=current)
        if costly:
            problems.extend((source, f"{key}.{field}", message) for field, message in costly)
            continue
        out.append(window)
    if problems:
        lines = "\n".join(f"  {o}: {k}: {m}" for o, k, m in problems)
        raise ConfigError(f"{len(problems)} maintenance window problem(s):\n{lines}", problems)
    return out


def windows_from_config(
    items: Sequence[Mapping[str, Any]],
    *,
    source: str = "<config>",
    now: datetime | None = None,
) -> list[MaintenanceWindow]:
    """Build windows from raw ``maintenance.windows`` entries (``config.MaintenanceWindowConfig``
    shape); report every problem at once.

    Recurring windows must also pass ``recurrence_problems`` (evaluated at ``now``,
    default the current time), as in ``config_windows``.

    Raises:
        ConfigError: one ``(source, "maintenance.windows.<i>[.<key>]", message)`` per
            problem, duplicate ids included.
    """
    problems: list[tuple[str, str, str]] = []
    valid: list[tuple[int, MaintenanceWindowConfig]] = []
    for i, item in enumerate(items):
        try:
            valid.append((i, MaintenanceWindowConfig.model_validate(item)))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                key = f"maintenance.windows.{i}"
                problems.append((source, f"{key}.{loc}" if loc else key, msg))
    return _build(valid, source, problems, now)


def config_windows(
    config: MaintenanceConfig, source: str = "<config>", *, now: datetime | None = None
) -> list[MaintenanceWindow]:
    """The ``maintenance.windows`` of a loaded ``Config`` as contract values.

    Used by the engine, ``netcortex check-config`` and ``netcortex maintenance``,
    so all see the same config windows. Naive ``start``/``end`` are wall-clock
    time in the window's ``timezone``; ``duration`` is absolute elapsed time (a
    4 h window is 4 h long on a DST day too), as for recurring occurrences.
    Recurring windows must pass ``recurrence_problems`` at ``now`` (default the
    current time): a rule the calendar would evaluate slowly stops the start.

    Raises:
        ConfigError: one problem per refused window or duplicate id, all at once;
            ``recurrence_problems`` findings as ``maintenance.windows.<i>.<field>``.
    """
    return _build(enumerate(config.windows), source, [], now)


# ------------------------------------------------------------------ evaluation


class _Entry:
    """One window, compiled: bounds as UTC instants, the rule, the memoised answer.

    ``covering(at)`` is the end of the occurrence covering ``at`` (``None`` when
    none does); ``next_boundary(at)`` is the next start or end after ``at``.
    """

    __slots__ = (
        "_done",
        "_iter",
        "_locals",
        "_memo_end",
        "_memo_hi",
        "_memo_lo",
        "config_owned",
        "duration",
        "end",
        "recurring",
        "start",
        "window",
        "zone",
    )

    def __init__(self, window: MaintenanceWindow, *, config_owned: bool) -> None:
        validate_window(window)
        self.window = window
        self.config_owned = config_owned
        self.zone = _zone(window.timezone)
        self.start = window.start.astimezone(UTC)
        self.end = window.end.astimezone(UTC)
        self.duration = self.end - self.start
        self.recurring = window.rrule is not None
        # Local (floating) occurrence starts, strictly increasing, grown lazily.
        self._locals: list[datetime] = []
        self._iter: Iterator[datetime] | None = None
        self._done = True
        if window.rrule is not None:
            self._iter = iter(_parse_rule(window.rrule, window.start, self.zone))
            self._done = False
        # Memo: for lo <= at < hi (hi None = forever) the covering end is _memo_end.
        self._memo_lo: datetime | None = None
        self._memo_hi: datetime | None = None
        self._memo_end: datetime | None = None

    # -- one-off and memoised recurring answers

    def covering(self, at: datetime) -> datetime | None:
        """End of the occurrence covering ``at``, or ``None``."""
        if not self.recurring:
            return self.end if self.start <= at < self.end else None
        lo = self._memo_lo
        if lo is not None and lo <= at and (self._memo_hi is None or at < self._memo_hi):
            return self._memo_end
        self._evaluate(at)
        return self._memo_end

    def next_boundary(self, after: datetime) -> datetime | None:
        """The first start or end of an occurrence strictly after ``after``, or ``None``."""
        if not self.recurring:
            if after < self.start:
                return self.start
            return self.end if after < self.end else None
        lo = self._memo_lo
        if not (
            lo is not None and lo <= after and (self._memo_hi is None or after < self._memo_hi)
        ):
            self._evaluate(after)
        return self._memo_hi

    # -- the occurrence table

    def _local_starts_from(self, local_lo: datetime) -> Iterator[datetime]:
        """Local occurrence starts ``>= local_lo``, in order (grows the table lazily)."""
        starts = self._locals
        while not self._done and (not starts or starts[-1] < local_lo):
            self._grow()
        i = bisect.bisect_left(starts, local_lo)
        while True:
            if i >= len(starts):
                if self._done:
                    return
                self._grow()
                continue
            yield starts[i]
            i += 1

    def _grow(self) -> None:
        assert self._iter is not None
        for _ in range(8):  # small steps: a first lookup stays cheap
            try:
                self._locals.append(next(self._iter))
            except StopIteration:
                self._done = True
                self._iter = None
                return

    def _instant(self, local: datetime) -> datetime:
        # fold=0: a nonexistent local time takes the offset from before the gap (RFC
        # 5545: shifted forward by the gap length); an ambiguous one is the first.
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def _evaluate(self, at: datetime) -> None:
        """Compute and memoise the answer at ``at`` and the interval it holds for."""
        at = at.astimezone(UTC)
        local_at = at.astimezone(self.zone).replace(tzinfo=None)
        horizon = local_at + _SLACK
        duration = self.duration
        cover_end: datetime | None = None
        hi: datetime | None = None
        lo = at - _SAFE
        for local in self._local_starts_from(local_at - duration - _SLACK):
            start = self._instant(local)
            end = start + duration
            if start <= at < end and (cover_end is None or end > cover_end):
                cover_end = end
            for edge in (start, end):
                if edge > at:
                    if hi is None or edge < hi:
                        hi = edge
                elif edge > lo:
                    lo = edge
            if local > horizon:
                break
        self._memo_lo, self._memo_hi, self._memo_end = lo, hi, cover_end


# ------------------------------------------------------------------ the calendar


def _to_s(value: datetime) -> int:
    return int(value.timestamp())


def _row(window: MaintenanceWindow, now: float) -> tuple[Any, ...]:
    return (
        window.id,
        window.scope,
        window.target,
        _to_s(window.start),
        _to_s(window.end),
        window.rrule,
        window.timezone,
        window.reason,
        int(now),
    )


def _instant(value: Any, zone: ZoneInfo) -> datetime:
    """Whole UTC seconds → an aware datetime in ``zone`` (in UTC when the local time
    would lie past year 9999, as the end of a "forever" window east of UTC does).

    Raises:
        ValueError: not an integer, or no datetime can hold it.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected whole seconds, got {value!r}")  # noqa: TRY004 - a bad value
    try:
        instant = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{value} s is out of range: {exc}") from exc
    try:
        return instant.astimezone(zone)
    except OverflowError:
        return instant


def _window(row: Sequence[Any]) -> MaintenanceWindow:
    """The window a stored row holds.

    Raises:
        ValueError: the row cannot be one (hand-edited: wrong types, times out of range,
            unknown zone); the caller skips it.
    """
    for i, name in ((0, "id"), (1, "scope"), (2, "target"), (6, "timezone"), (7, "reason")):
        if not isinstance(row[i], str):
            raise ValueError(f"{name} must be text, got {row[i]!r}")  # noqa: TRY004 - a bad value
    if row[5] is not None and not isinstance(row[5], str):
        raise ValueError(f"rrule must be text or NULL, got {row[5]!r}")
    zone = _zone(row[6])
    return MaintenanceWindow(
        id=row[0],
        scope=row[1],
        target=row[2],
        start=_instant(row[3], zone),
        end=_instant(row[4], zone),
        rrule=row[5],
        timezone=row[6],
        reason=row[7],
    )


class _Metrics:
    """The calendar's metrics, declared in one place."""

    def __init__(self, registry: Registry) -> None:
        self.lookups = registry.counter(
            "netcortex_maintenance_lookups_total",
            "Maintenance calendar lookups, by result (active = a window covered the target).",
            ("result",),
        )
        self.examined = registry.counter(
            "netcortex_maintenance_windows_examined_total",
            "Windows examined by lookups (only the windows indexed under the looked-up target).",
        )
        self.windows = registry.gauge(
            "netcortex_maintenance_windows",
            "Maintenance windows known, by source (config or store).",
            ("source",),
        )


class StoredMaintenanceCalendar:
    """``MaintenanceCalendar`` over config windows plus windows kept in a ``WindowStorage``.

    ``active`` and ``next_change`` are synchronous and answer from memory; they
    work before ``start`` (config windows only) and after ``close``. ``add`` and
    ``remove`` write through the storage, then update the index; they are
    serialised, so concurrent calls from many tasks are safe. Between ``start``
    and ``close`` windows stored by other connections are reloaded within
    ``reload_interval`` seconds (see the module docstring). Supports ``async with``.
    Use ``SqliteMaintenanceCalendar`` or ``PostgresMaintenanceCalendar``.
    """

    def __init__(
        self,
        storage: WindowStorage,
        *,
        windows: Sequence[MaintenanceWindow] = (),
        metrics: Registry | None = None,
        reload_interval: float = _RELOAD_INTERVAL_S,
    ) -> None:
        """Index the config windows (no I/O until ``start``).

        Args:
            storage: where run-time windows are kept (``maintenance_storage``).
            windows: config-owned windows (``maintenance.windows``): indexed, never
                written, not removable with ``remove``.
            metrics: where to count; a private registry when ``None``.
            reload_interval: seconds between checks for windows added or removed
                by another connection (after ``start``); ``0`` turns reloading off.

        Raises:
            ValueError: a config window is invalid, or two share an id, or
                ``reload_interval`` is negative.
        """
        if not reload_interval >= 0:
            raise ValueError(f"reload_interval must be >= 0 seconds, got {reload_interval!r}")
        self._reload_interval = float(reload_interval)
        self._storage = storage
        self._metrics = _Metrics(metrics if metrics is not None else Registry())
        self._entries: dict[str, _Entry] = {}
        self._index: dict[str, dict[str, list[_Entry]]] = {s: {} for s in MAINTENANCE_SCOPES}
        self._by_device = self._index["device"]
        self._by_interface = self._index["interface"]
        self._by_site = self._index["site"]
        self._by_role = self._index["role"]
        self._by_tag = self._index["tag"]
        for window in windows:
            if window.id in self._entries:
                raise ValueError(f"duplicate maintenance window id {window.id!r} in config")
            self._insert(_Entry(window, config_owned=True))
        self._opened = False
        self._lock = asyncio.Lock()
        # Stored rows as last seen (by id; invalid and shadowed ones too), so a
        # reload rebuilds only what changed and warns once per change.
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._reloader: asyncio.Task[None] | None = None
        self._reload_failing = False
        self._count_gauges()

    @property
    def where(self) -> str:
        """Where the run-time windows are kept (for messages; never a password)."""
        return self._storage.where

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> StoredMaintenanceCalendar:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the storage, create its table, load stored windows. Idempotent.

        A stored window that no longer compiles (say, a time zone removed from the
        tz database) is skipped with a ``maintenance_window_invalid`` warning; a
        stored window with the id of a config window is shadowed by it
        (``maintenance_window_shadowed``).

        Raises:
            StoreError: the storage cannot be opened or read (for SQLite also a
                ``:memory:`` path: windows must outlive the process).
        """
        async with self._lock:
            if self._opened:
                return
            rows = await self._storage.open()
            try:
                self._apply_rows(rows)
            except BaseException:
                await self._storage.close()
                raise
            self._opened = True
            log.info(
                "maintenance_calendar_opened",
                where=self._storage.where,
                config_windows=sum(e.config_owned for e in self._entries.values()),
                stored_windows=sum(not e.config_owned for e in self._entries.values()),
                reload_interval=self._reload_interval,
            )
            if self._reload_interval > 0:
                self._reloader = asyncio.create_task(self._reload_loop(), name="maintenance-reload")

    async def close(self) -> None:
        """Close the storage. Idempotent; safe without ``start``.

        The in-memory index stays: ``active`` keeps answering; ``add``/``remove``
        raise ``StoreError``. Reloading stops.
        """
        reloader, self._reloader = self._reloader, None
        if reloader is not None:
            reloader.cancel()
            await asyncio.gather(reloader, return_exceptions=True)
        async with self._lock:
            if not self._opened:
                return
            self._opened = False
            try:
                await self._storage.close()
            except StoreError as exc:
                log.warning("maintenance_calendar_close_failed", error=str(exc))
            log.info("maintenance_calendar_closed", where=self._storage.where)

    # ---------------------------------------------------------------- lookups

    def active(
        self,
        at: datetime,
        *,
        device: str | None = None,
        interface: str | None = None,
        site: str | None = None,
        role: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> MaintenanceWindow | None:
        """The window covering the target at ``at``, or ``None``.

        ``interface`` is the interface name (joined to ``device`` as
        ``device|interface``) or already ``device|interface`` (then ``device`` may
        be omitted). Pass the site, role and tags of the event's device. Among
        several covering windows the one whose occurrence ends last wins (ties:
        smallest id). Costs O(windows indexed under these targets).

        Raises:
            ValueError: ``at`` is naive.
        """
        if at.tzinfo is None:
            raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
        buckets: list[list[_Entry]] = []
        if interface is not None:
            if "|" in interface:
                full = interface
                if device is None:
                    device = interface.partition("|")[0]
            else:
                full = f"{device}|{interface}" if device is not None else ""
            bucket = self._by_interface.get(full)
            if bucket:
                buckets.append(bucket)
        for index, key in (
            (self._by_device, device),
            (self._by_site, site),
            (self._by_role, role),
        ):
            if key is not None:
                bucket = index.get(key)
                if bucket:
                    buckets.append(bucket)
        for tag in tags:
            bucket = self._by_tag.get(tag)
            if bucket:
                buckets.append(bucket)
        best: _Entry | None = None
        best_end: datetime | None = None
        examined = 0
        for bucket in buckets:
            examined += len(bucket)
            for entry in bucket:
                end = entry.covering(at)
                if end is None:
                    continue
                if (
                    best is None
                    or best_end is None
                    or end > best_end
                    or (end == best_end and entry.window.id < best.window.id)
                ):
                    best, best_end = entry, end
        if examined:
            self._metrics.examined.inc(examined)
        if best is None:
            self._metrics.lookups.inc(result="none")
            return None
        self._metrics.lookups.inc(result="active")
        return best.window

    def next_change(self, after: datetime) -> datetime | None:
        """The first instant strictly after ``after`` at which any window starts or ends.

        Costs O(all windows) (memoised per recurring window): call it when a fact is
        suppressed or a window changes, not per event.

        Raises:
            ValueError: ``after`` is naive.
        """
        if after.tzinfo is None:
            raise ValueError(f"after must be a timezone-aware datetime, got {after!r}")
        best: datetime | None = None
        for entry in self._entries.values():
            edge = entry.next_boundary(after)
            if edge is not None and (best is None or edge < best):
                best = edge
        return best

    def windows(self) -> list[MaintenanceWindow]:
        """Every window (config and stored), ordered by start, then id."""
        entries = sorted(self._entries.values(), key=lambda e: (e.start, e.window.id))
        return [e.window for e in entries]

    # ---------------------------------------------------------------- changes

    async def add(self, window: MaintenanceWindow) -> None:
        """Store ``window`` durably (replacing a stored window with its id), then index it.

        A recurring window must also pass ``recurrence_problems`` (run on a worker
        thread: the probe may take up to ``PROBE_BUDGET`` seconds).

        Raises:
            ValueError: the window is invalid, or its rule would be expensive to
                evaluate (every problem named).
            StoreError: the calendar is not open, the id belongs to a config window,
                or the write failed (the index is then unchanged).
        """
        entry = _Entry(window, config_owned=False)
        if window.rrule is not None:
            costly = await asyncio.to_thread(recurrence_problems, window)
            if costly:
                detail = "; ".join(f"{f}: {m}" for f, m in costly)
                raise ValueError(f"invalid maintenance window {window.id!r}: {detail}")
        async with self._lock:
            existing = self._entries.get(window.id)
            if existing is not None and existing.config_owned:
                raise StoreError(
                    f"maintenance window {window.id!r} comes from the config file "
                    "(maintenance.windows); change it there"
                )
            self._require_open()
            row = _row(window, time.time())
            await self._storage.upsert(row)
            self._rows[window.id] = row
            self._replace(entry)
            self._count_gauges()
        log.info(
            "maintenance_window_added",
            window_id=window.id,
            scope=window.scope,
            target=window.target,
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            rrule=window.rrule,
            timezone=window.timezone,
            replaced=existing is not None,
        )

    async def remove(self, window_id: str) -> bool:
        """Delete a stored window; ``True`` if it existed.

        Raises:
            StoreError: the calendar is not open, the window comes from the config
                file (remove it there), or the write failed.
        """
        async with self._lock:
            existing = self._entries.get(window_id)
            if existing is not None and existing.config_owned:
                raise StoreError(
                    f"maintenance window {window_id!r} comes from the config file "
                    "(maintenance.windows) and cannot be removed at run time; "
                    "delete it from the config file"
                )
            self._require_open()
            deleted = await self._storage.delete(window_id)
            self._rows.pop(window_id, None)
            if existing is not None:
                self._discard(existing)
                self._count_gauges()
        existed = deleted > 0 or existing is not None
        log.info("maintenance_window_removed", window_id=window_id, existed=existed)
        return existed

    # ---------------------------------------------------------------- index

    def _insert(self, entry: _Entry) -> None:
        self._entries[entry.window.id] = entry
        self._index[entry.window.scope].setdefault(entry.window.target, []).append(entry)

    def _discard(self, entry: _Entry) -> None:
        del self._entries[entry.window.id]
        index = self._index[entry.window.scope]
        bucket = index[entry.window.target]
        # Rebuild rather than mutate: a lookup iterating the old list stays consistent.
        rest = [e for e in bucket if e is not entry]
        if rest:
            index[entry.window.target] = rest
        else:
            del index[entry.window.target]

    def _replace(self, entry: _Entry) -> None:
        old = self._entries.get(entry.window.id)
        if old is not None:
            self._discard(old)
        self._insert(entry)

    def _apply_rows(self, rows: Sequence[tuple[Any, ...]]) -> tuple[int, int, int]:
        """Make the stored windows exactly ``rows``; swap the new index in at once.

        Rows equal to the ones last seen keep their compiled entry. A row with a
        config window's id is shadowed; a row that does not compile is skipped;
        both are logged once per change of the row.

        Returns:
            ``(added, changed, removed)`` stored windows.
        """
        seen = {row[0]: tuple(row) for row in rows}
        entries = {i: e for i, e in self._entries.items() if e.config_owned}
        added = changed = removed = 0
        for window_id, row in seen.items():
            old = self._entries.get(window_id)
            if window_id in entries:
                if self._rows.get(window_id) != row:
                    log.warning("maintenance_window_shadowed", window_id=window_id)
                continue
            if old is not None and self._rows.get(window_id) == row:
                entries[window_id] = old
                continue
            try:
                entries[window_id] = _Entry(_window(row), config_owned=False)
            except ValueError as exc:
                if self._rows.get(window_id) != row:
                    log.warning("maintenance_window_invalid", window_id=window_id, error=str(exc))
                if old is not None:
                    removed += 1
                continue
            if old is None:
                added += 1
            else:
                changed += 1
        removed += sum(1 for i, e in self._entries.items() if not e.config_owned and i not in seen)
        self._rows = seen
        self._swap(entries)
        return added, changed, removed

    def _swap(self, entries: dict[str, _Entry]) -> None:
        """Replace the entries and every index with ones built from ``entries``."""
        index: dict[str, dict[str, list[_Entry]]] = {s: {} for s in MAINTENANCE_SCOPES}
        for entry in entries.values():
            index[entry.window.scope].setdefault(entry.window.target, []).append(entry)
        # No await from here on: a lookup sees the old or the new index, never a mix.
        self._entries = entries
        self._index = index
        self._by_device = index["device"]
        self._by_interface = index["interface"]
        self._by_site = index["site"]
        self._by_role = index["role"]
        self._by_tag = index["tag"]
        self._count_gauges()

    async def _reload_loop(self) -> None:
        """Every ``reload_interval`` s: reload the stored windows if another connection wrote."""
        while True:
            await asyncio.sleep(self._reload_interval)
            try:
                await self._reload()
            except Exception as exc:  # noqa: BLE001 - the reloader must outlive any one poll
                # Keep answering from the current index; say so once per failure streak.
                if not self._reload_failing:
                    log.warning(
                        "maintenance_reload_failed",
                        where=self._storage.where,
                        error=str(exc),
                        error_type=type(exc).__name__,
                    )
                self._reload_failing = True
            else:
                if self._reload_failing:
                    log.info("maintenance_reload_recovered", where=self._storage.where)
                self._reload_failing = False

    async def _reload(self) -> None:
        async with self._lock:
            if not self._opened:
                return
            rows = await self._storage.poll()
            if rows is None:
                return
            added, changed, removed = self._apply_rows(rows)
        if added or changed or removed:
            log.info(
                "maintenance_windows_reloaded",
                added=added,
                changed=changed,
                removed=removed,
                windows=len(self._entries),
            )

    def _count_gauges(self) -> None:
        config = sum(e.config_owned for e in self._entries.values())
        self._metrics.windows.set(config, source="config")
        self._metrics.windows.set(len(self._entries) - config, source="store")

    # ---------------------------------------------------------------- storage

    def _require_open(self) -> None:
        if not self._opened:
            raise StoreError(
                "maintenance calendar is not open (call start() first, or it was closed)"
            )


class SqliteMaintenanceCalendar(StoredMaintenanceCalendar):
    """The calendar with run-time windows in a SQLite file (``store.sqlite_path``)."""

    def __init__(
        self,
        path: Path | str,
        *,
        windows: Sequence[MaintenanceWindow] = (),
        metrics: Registry | None = None,
        reload_interval: float = _RELOAD_INTERVAL_S,
    ) -> None:
        """See ``StoredMaintenanceCalendar``; ``path`` is created on ``start`` (the
        outcome store's file is fine; ``:memory:`` is refused by ``start``)."""
        super().__init__(
            SqliteWindowStorage(path),
            windows=windows,
            metrics=metrics,
            reload_interval=reload_interval,
        )


class PostgresMaintenanceCalendar(StoredMaintenanceCalendar):
    """The calendar with run-time windows in PostgreSQL (``store.postgres_dsn``,
    table ``maintenance_windows`` in ``store.postgres_schema``)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        windows: Sequence[MaintenanceWindow] = (),
        metrics: Registry | None = None,
        reload_interval: float = _RELOAD_INTERVAL_S,
    ) -> None:
        """See ``StoredMaintenanceCalendar``.

        Raises:
            StoreError: ``schema`` is not a lower-case SQL identifier.
        """
        super().__init__(
            PostgresWindowStorage(dsn, schema),
            windows=windows,
            metrics=metrics,
            reload_interval=reload_interval,
        )
