"""Episodic memory: the outcome stores' metrics, declared once for every backend.

May import: ``metrics``.
"""

from __future__ import annotations

from netcortex.metrics import Registry

__all__ = ["StoreMetrics"]


class StoreMetrics:
    """One outcome store's metrics, every series labelled with its ``backend``."""

    def __init__(self, registry: Registry, backend: str) -> None:
        self.registry = registry
        self.backend = backend
        self.rows = registry.counter(
            "netcortex_store_rows_total", "Outcome rows written, by backend.", ("backend",)
        )
        self.duplicates = registry.counter(
            "netcortex_store_duplicates_total",
            "Rows ignored because their outcome_id was already stored, by backend.",
            ("backend",),
        )
        self.failures = registry.counter(
            "netcortex_store_write_failures_total",
            "Batches that failed to commit (their rows are lost), by backend.",
            ("backend",),
        )
        self.refused = registry.counter(
            "netcortex_store_rows_refused_total",
            "Rows the database refused on their own (written one by one after their batch "
            "was refused; the rest of the batch was stored), by backend.",
            ("backend",),
        )
        self.batch_seconds = registry.histogram(
            "netcortex_store_batch_seconds", "Time to write one batch, by backend.", ("backend",)
        )
        self.retention_deleted = registry.counter(
            "netcortex_store_retention_deleted_total",
            "Outcome rows deleted by retention (store.retention_days), by backend.",
            ("backend",),
        )

    def batch(self, rows: int, written: int, seconds: float) -> None:
        """One committed batch of ``rows`` rows, ``written`` of them new."""
        self.rows.inc(written, backend=self.backend)
        if rows > written:
            self.duplicates.inc(rows - written, backend=self.backend)
        self.batch_seconds.observe(seconds, backend=self.backend)

    def failure(self) -> None:
        """One batch that failed to commit."""
        self.failures.inc(backend=self.backend)

    def pruned(self, rows: int) -> None:
        """``rows`` rows deleted by retention."""
        self.retention_deleted.inc(rows, backend=self.backend)
