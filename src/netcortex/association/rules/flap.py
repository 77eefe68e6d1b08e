"""Association rule ``flapping``: an interface or BGP session changing state too often.

Each member (``device|interface`` or ``device|peer``) keeps the times of its
state changes (down → up or up → down; a repeat of the current state is not a
change) within a sliding ``flap_window``, each with the outcome that reported
it. When the count reaches ``flap_high`` the member is *flapping*: one
``flapping`` incident opens with those outcomes as its evidence, and its later downs
and ups are absorbed into it instead of feeding the other rules. It stays
flapping while the count is between the thresholds (hysteresis) and is
``stabilised`` when the count falls below ``flap_low`` — on a later change or,
with no more changes, when time passes (``Correlator.tick``).

Example (window 300 s, high 6, low 2): ``sw1-north|GigabitEthernet1/0/2``
goes down/up/down/up/down/up at 10:00:00 … 10:00:50 → ``flapping`` at the
sixth change; with no further change the window empties until fewer than 2
changes remain (10:05:41) → ``stabilised``. Per member cost: a deque of at most
``flap_high`` (time, outcome id) pairs. May import: contracts, config.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from netcortex.config import AssociationConfig
from netcortex.contracts.events import Severity

__all__ = ["RULE", "FlapTracker"]

RULE = "flapping"


class FlapTracker:
    """State changes per member over a sliding window, with high/low hysteresis."""

    def __init__(self, config: AssociationConfig) -> None:
        self._window = timedelta(seconds=config.flap_window)
        self._high = config.flap_high
        self._low = config.flap_low
        self._down: dict[str, bool] = {}
        #: member → its recent changes as ``(time, outcome id, severity)``, oldest first
        self._changes: dict[str, deque[tuple[datetime, str, Severity]]] = {}

    @property
    def high(self) -> int:
        """Changes within the window that make a member flapping."""
        return self._high

    @property
    def low(self) -> int:
        """Below this many changes within the window a flapping member is stabilised."""
        return self._low

    def record(
        self,
        member: str,
        down: bool,
        at: datetime,
        outcome_id: str = "",
        severity: Severity = Severity.INFO,
    ) -> bool:
        """Note that ``member`` was reported ``down`` (or up) at ``at`` by ``outcome_id``.

        Returns:
            ``True`` when this report changed the member's state (an unknown
            member is taken as up, so its first down is a change).
        """
        was = self._down.get(member, False)
        if down:
            self._down[member] = True
        else:
            self._down.pop(member, None)
        if was == down:
            return False
        changes = self._changes.get(member)
        if changes is None:
            # At most ``high`` times are needed to tell "at or above high".
            changes = self._changes[member] = deque(maxlen=self._high)
        changes.append((at, outcome_id, severity))
        return True

    def count(self, member: str, now: datetime) -> int:
        """Changes of ``member`` within the window ending at ``now`` (capped at ``high``)."""
        changes = self._changes.get(member)
        if changes is None:
            return 0
        horizon = now - self._window
        while changes and changes[0][0] <= horizon:
            changes.popleft()
        if not changes and member not in self._down:
            del self._changes[member]
        return len(changes)

    def evidence(self, member: str) -> list[tuple[str, Severity]]:
        """``(outcome id, severity)`` of ``member``'s changes still held, oldest first
        (call ``count`` first to drop the ones that left the window)."""
        return [(oid, sev) for _, oid, sev in self._changes.get(member, ()) if oid]

    def is_down(self, member: str) -> bool:
        """The member's last reported state."""
        return self._down.get(member, False)

    def assume_down(self, member: str) -> None:
        """Take ``member`` as down without counting a change (state restored after a restart)."""
        self._down[member] = True

    def seed(self, member: str, at: datetime, down: bool) -> None:
        """Restore a flapping member (after a restart): ``high`` changes at ``at``."""
        self._changes[member] = deque([(at, "", Severity.INFO)] * self._high, maxlen=self._high)
        if down:
            self._down[member] = True

    def __len__(self) -> int:
        return len(self._changes)
