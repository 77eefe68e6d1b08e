"""Bridge: the operator's edge — the ``netcortex`` CLI and ``bridge.http`` (the HTTP
server inside ``netcortex run``: API, Meraki webhook route, metrics, health).

The edge may import everything (it picks concrete backends, like ``app``).
"""

from netcortex.bridge.cli import main

__all__ = ["main"]
