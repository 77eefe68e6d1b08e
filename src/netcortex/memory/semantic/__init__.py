"""Memory, semantic: what the network is (the inventory).

Two ``contracts.memory.SemanticMemory`` backends, picked by ``inventory.backend``
in ``app.py``:

* ``FileInventory`` (``file``): one YAML/JSON file of NetBox-shaped list bodies;
* ``NetboxInventory`` (``netbox``): synced from NetBox REST API v4, refreshed in
  the background (stale-while-revalidate).

Both index one in-memory ``Snapshot`` (``_index.py``): every lookup is a dict hit.
May import: ``contracts``, ``errors``, ``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

from netcortex.memory.semantic._index import (
    Snapshot,
    build_snapshot,
    canonical_address,
    canonical_mac,
    normalise_interface_name,
)
from netcortex.memory.semantic.inventory_file import FileInventory
from netcortex.memory.semantic.netbox import NetboxInventory, authorization_header

__all__ = [
    "FileInventory",
    "NetboxInventory",
    "Snapshot",
    "authorization_header",
    "build_snapshot",
    "canonical_address",
    "canonical_mac",
    "normalise_interface_name",
]
