"""Association: reflex outcomes correlated into incidents (issue 8).

``Correlator`` takes outcomes (and the passing of time) and gives incident
transitions (``contracts.incidents``): one incident per cable cut, per device
down or restart with what it took down, per BGP drop over a failed link, per
site outage, and one ``flapping`` incident per interface or session that will
not settle. Each rule is a small unit in ``association.rules``; the rules are
explained with examples in ``docs/ASSOCIATION.md``. ``engine.IncidentWorker`` runs
a correlator in the engine; with several workers ``fleet.FleetCorrelator`` runs it
on exactly one of them, the holder of a ``lease.JetStreamLease`` (issue 10).
May import: contracts, config, errors, metrics, logs.
"""

from __future__ import annotations

from netcortex.association.correlator import (
    DOWN_HANDLERS,
    UP_HANDLERS,
    Correlator,
    incident_id_for,
)

__all__ = ["DOWN_HANDLERS", "UP_HANDLERS", "Correlator", "incident_id_for"]
