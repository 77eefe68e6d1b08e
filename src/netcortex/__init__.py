"""netcortex — the fast path of a network operations brain.

Regions, in the order data flows through them:

* ``sensory``  — receivers turn raw signals (SNMP traps, ...) into ``SensoryEvent``.
* ``thalamus`` — the event bus (in-memory or NATS JetStream) and the subject grammar.
* ``reflex``   — fast deterministic handlers run by one task per handler.
* ``memory``   — episodic (outcome stores) and semantic (inventory) memory.
* ``bridge``   — the operator's edge: CLI (and later HTTP).

``contracts`` holds the Protocols and frozen value types every region talks through;
``app`` is the composition root that wires concrete backends from ``config``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
