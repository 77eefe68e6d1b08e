"""Sensory / trap: the SNMP trap receiver (UDP; v1, v2c, v3 USM; informs answered).

Flow: ``transport.TrapReceiver`` (UDP, allow-list, queue, publishers) →
``decode.TrapDecoder`` (size, ``ber`` codec, community or ``usm.UsmSecurity``,
RFC 3584 translation) → ``normalize.Normalizer`` (event class, target, payload) →
``contracts.bus.EventBus``.
"""

from netcortex.sensory.trap.ber import VarBind
from netcortex.sensory.trap.decode import Notification, TrapDecoder
from netcortex.sensory.trap.normalize import SOURCE, Normalizer, normalize
from netcortex.sensory.trap.transport import TrapReceiver
from netcortex.sensory.trap.usm import UsmSecurity

__all__ = [
    "SOURCE",
    "Normalizer",
    "Notification",
    "TrapDecoder",
    "TrapReceiver",
    "UsmSecurity",
    "VarBind",
    "normalize",
]
