"""Memory, semantic: ``FileInventory`` — the inventory from one YAML or JSON file.

The file is shaped like NetBox API list responses: top-level keys are API list
paths (``/api/dcim/devices/``), values are list bodies (``{count, next,
previous, results}``; a bare list of objects is accepted too). Keys starting
with ``_`` (metadata) and lists netcortex does not use (``/api/ipam/asns/``)
are ignored. An export of a real NetBox (or the shared test fixture
``netbox/inventory.json``) loads as is.

``start()`` reads and indexes the file once (``StoreError`` naming the file when
it is missing or not such a document); ``reload()`` re-reads it and swaps the
snapshot only when the new read succeeds. ``snapshot_age()`` counts from the
last successful read.

May import: ``contracts``, ``errors``, ``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import structlog
import yaml

from netcortex.errors import StoreError
from netcortex.memory.semantic._index import (
    API_PATHS,
    Snapshot,
    SnapshotMemory,
    build_snapshot,
)
from netcortex.metrics import Registry

__all__ = ["FileInventory", "parse_inventory_document"]

log = structlog.get_logger(__name__)


def parse_inventory_document(doc: Any, *, source: str) -> dict[str, list[Any]]:
    """The ``results`` per snapshot kind from a parsed NetBox-shaped document.

    Raises:
        StoreError: ``doc`` is not a mapping, or a known list is not a list body.
    """
    if not isinstance(doc, dict):
        raise StoreError(f"inventory {source}: top level must be a mapping of API list paths")
    lists: dict[str, list[Any]] = {}
    for kind, path in API_PATHS.items():
        body = doc.get(path, doc.get(path.rstrip("/")))
        if body is None:
            continue
        results = body.get("results") if isinstance(body, dict) else body
        if not isinstance(results, list):
            raise StoreError(f"inventory {source}: {path} has no 'results' list")
        lists[kind] = results
    if not lists:
        raise StoreError(
            f"inventory {source}: none of the API list paths {sorted(API_PATHS.values())} found"
        )
    return lists


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)  # YAML is a superset of JSON: any other suffix too


class FileInventory(SnapshotMemory):
    """``SemanticMemory`` backed by one YAML/JSON file of NetBox list bodies.

    Args:
        path: the file (``.json`` parsed as JSON, anything else as YAML).
        metrics: registry for the ``netcortex_inventory_*`` metrics
            (``backend="file"``); a private one when ``None``.

    Lookups are synchronous dict hits on the snapshot in use; see ``SnapshotMemory``.
    """

    _backend = "file"

    def __init__(self, path: Path, *, metrics: Registry | None = None) -> None:
        super().__init__(metrics)
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileInventory(path={str(self.path)!r})"

    async def _load(self) -> Snapshot:
        started = time.monotonic()
        wall = time.time()
        source = str(self.path)
        try:
            doc = await asyncio.to_thread(_read, self.path)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise StoreError(f"inventory {source}: cannot read: {exc}") from exc
        lists = parse_inventory_document(doc, source=source)
        snap = build_snapshot(lists, source=source, taken_at=started, taken_wall=wall)
        self._install(snap, time.monotonic() - started)
        log.info("inventory_loaded", backend="file", source=source, **snap.counts)
        return snap

    async def start(self) -> None:
        """Read and index the file.

        Raises:
            StoreError: the file is missing, unreadable, or not a NetBox-shaped
                document (the message names the file).
        """
        try:
            await self._load()
        except StoreError:
            self._failed()
            raise

    async def reload(self) -> None:
        """Re-read the file; on failure keep the snapshot in use and raise.

        Raises:
            StoreError: as for ``start`` (the old snapshot stays in use).
        """
        try:
            await self._load()
        except StoreError as exc:
            self._failed()
            log.warning("inventory_reload_failed", backend="file", error=str(exc))
            raise

    async def close(self) -> None:
        """Nothing to release (idempotent; safe without ``start``)."""

    async def __aenter__(self) -> FileInventory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
