"""The public surface of netcortex.association is fixed by this test."""

from __future__ import annotations

import inspect

import netcortex.association as association


def test_association_exports() -> None:
    """netcortex.association exports the correlator, its id function and handler tables."""
    assert sorted(association.__all__) == [
        "Correlator",
        "DOWN_HANDLERS",
        "UP_HANDLERS",
        "incident_id_for",
    ]
    assert all(hasattr(association, name) for name in association.__all__)


def test_correlator_public_methods() -> None:
    """The correlator's public methods are observe, tick, open_incidents, restore, fact_count."""
    public = sorted(n for n, _ in inspect.getmembers(association.Correlator) if n[0] != "_")
    assert public == ["fact_count", "observe", "open_incidents", "restore", "tick"]
