"""Reflex: the built-in handlers, each a tiny class (id, patterns, dedup window, ``handle``).

``reflex.registry.builtin_registry`` lists them explicitly; nothing registers
itself on import. May import: ``reflex.protocol`` (and so ``contracts``).
"""

from __future__ import annotations

from netcortex.reflex.handlers.bgp_drop import BgpDropHandler
from netcortex.reflex.handlers.bgp_established import BgpEstablishedHandler
from netcortex.reflex.handlers.config_change import ConfigChangeHandler
from netcortex.reflex.handlers.device_down import DeviceDownHandler
from netcortex.reflex.handlers.device_reboot import DeviceRebootHandler
from netcortex.reflex.handlers.device_up import DeviceUpHandler
from netcortex.reflex.handlers.link_down import LinkDownHandler
from netcortex.reflex.handlers.link_up import LinkUpHandler
from netcortex.reflex.handlers.security_webhook import SecurityWebhookHandler

__all__ = [
    "BgpDropHandler",
    "BgpEstablishedHandler",
    "ConfigChangeHandler",
    "DeviceDownHandler",
    "DeviceRebootHandler",
    "DeviceUpHandler",
    "LinkDownHandler",
    "LinkUpHandler",
    "SecurityWebhookHandler",
]
