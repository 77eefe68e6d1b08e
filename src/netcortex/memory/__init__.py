"""Memory: what netcortex remembers.

``episodic`` keeps what happened (outcome stores, later dedup stores);
``semantic`` knows what the network is (inventory, maintenance windows). Each
backend implements a ``contracts.memory`` Protocol and is picked by name in
``app.py``. May import: ``contracts``, ``errors``, ``config``, ``metrics``.
"""
