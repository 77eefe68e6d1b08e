"""Motor: ``JournalPolicy`` — which outcomes become NetBox journal entries (issue 7).

The outcome store asks the policy inside ``record()`` (the journal job is
written in the same transaction as its outcome), so ``wants`` sits on the hot
path: it is pure, allocation-free, never raises, and does no I/O. Everything
that can be decided from the configuration is decided once, in
``from_config``.

The rule (``journal`` config section):

* only ``logged`` outcomes: ``skipped`` is a duplicate of a fact already
  written, ``suppressed`` is maintenance work operators asked not to hear
  about, ``errored`` is netcortex's own problem (logs and metrics cover it);
* of severity ``min_severity`` or above (default ``high``: ``high`` and
  ``critical``);
* from the handlers in ``handlers`` (empty: every handler);
* plus, with ``include_recoveries``, the recoveries that close those facts
  (``link_up`` closes ``link_down`` ...). Recoveries are ``info`` outcomes, so
  they need this explicit rule; they pass the handler filter when either the
  recovery or the handler whose fact it closes is listed. The policy is pure,
  so a recovery is written even when its down was not (it was suppressed, or
  happened before the journal was enabled): a lone "recovered" entry is
  harmless, a missing one after a written "down" is not.

Incidents (issue 8, ``wants_incident``): with association enabled an incident
of severity ``min_severity`` or above gets one entry, updated on every change
(the worker keeps updating an incident it journaled). Severity only: an
incident's severity never drops, so every later version of a journaled
incident passes too; the handler filter is about outcomes and does not apply.

May import: ``contracts``, ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from netcortex.config import JournalConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome

__all__ = ["RECOVERY_CLOSES", "SEVERITY_RANK", "JournalPolicy", "is_recovery"]

#: Recovery handler id → the id of the handler whose fact it closes. Mirrors
#: ``reflex.facts.RECOVERY_CLASSES`` by handler (motor may not import reflex; a
#: unit test keeps the two in step).
RECOVERY_CLOSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "link_up": "link_down",
        "bgp_established": "bgp_drop",
        "device_up": "device_down",
    }
)

#: Severities in increasing order of urgency.
SEVERITY_RANK: Final[Mapping[Severity, int]] = MappingProxyType(
    {Severity.INFO: 0, Severity.WARN: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
)


class JournalPolicy:
    """Decides, per outcome, whether it gets a NetBox journal entry.

    Args:
        min_severity: lowest severity written (recoveries aside).
        handlers: handler ids written; empty means every handler.
        include_recoveries: also write the recoveries in ``RECOVERY_CLOSES``.
    """

    __slots__ = ("_handlers", "_min", "_recoveries", "_severities")

    def __init__(
        self,
        *,
        min_severity: Severity | str = Severity.HIGH,
        handlers: frozenset[str] | set[str] | list[str] | tuple[str, ...] = (),
        include_recoveries: bool = True,
    ) -> None:
        self._min = Severity(min_severity)
        # Precomputed: the severities that pass (one set look-up per outcome).
        rank = SEVERITY_RANK[self._min]
        self._severities = frozenset(s for s, r in SEVERITY_RANK.items() if r >= rank)
        self._handlers = frozenset(handlers)
        recoveries: set[str] = set()
        if include_recoveries:
            for recovery, closes in RECOVERY_CLOSES.items():
                if not self._handlers or recovery in self._handlers or closes in self._handlers:
                    recoveries.add(recovery)
        self._recoveries = frozenset(recoveries)

    @classmethod
    def from_config(cls, config: JournalConfig) -> JournalPolicy:
        """The policy the ``journal`` section describes."""
        return cls(
            min_severity=config.min_severity,
            handlers=frozenset(config.handlers),
            include_recoveries=config.include_recoveries,
        )

    def __repr__(self) -> str:
        return (
            f"JournalPolicy(min_severity={self._min.value!r}, "
            f"handlers={sorted(self._handlers)}, recoveries={sorted(self._recoveries)})"
        )

    def wants(self, outcome: ReflexOutcome) -> bool:
        """Whether ``outcome`` should get a journal entry.

        Pure and cheap (two set look-ups); never raises: anything that is not a
        well-formed outcome is simply not wanted.
        """
        try:
            kind, handler_id, severity = outcome.kind, outcome.handler_id, outcome.severity
            if kind is not OutcomeKind.LOGGED:
                return False
            if handler_id in self._recoveries:
                return True
            wanted = severity in self._severities and (
                not self._handlers or handler_id in self._handlers
            )
        except Exception:  # noqa: BLE001 - called inside the store's transaction: never raise
            return False
        return wanted

    def wants_incident(self, incident: Incident) -> bool:
        """Whether ``incident`` should get (and keep updating) a journal entry: its
        severity is ``min_severity`` or above. Pure; never raises."""
        try:
            return incident.severity in self._severities
        except Exception:  # noqa: BLE001 - called by the association worker: never raise
            return False


def is_recovery(outcome: ReflexOutcome) -> bool:
    """Whether ``outcome`` comes from a recovery handler (``link_up`` ...)."""
    return outcome.handler_id in RECOVERY_CLOSES
