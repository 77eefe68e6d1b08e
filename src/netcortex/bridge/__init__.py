"""Bridge: the operator's edge — the ``netcortex`` CLI now, the HTTP API and stream later.

The edge may import everything (it picks concrete backends, like ``app``).
"""

from netcortex.bridge.cli import main

__all__ = ["main"]
