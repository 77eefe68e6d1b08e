"""Sensory / webhook: ``MerakiAlert`` → ``SensoryEvent`` (event class, canonical target, payload).

Pure CPU, no I/O (fuzzable): semantic-memory lookups are in-memory dict hits.

**Classification**, first match wins:

1. ``meraki.alert_types`` (config) by ``alertTypeId`` → ``config:alert_types``;
2. the built-in ``alertTypeId`` table ``ALERT_TYPE_CLASSES`` → ``alertTypeId:<id>``;
3. ``meraki.alert_type_patterns`` (config), searched case-insensitively in
   ``alertType`` → ``config:alert_type_patterns:<regex>``;
4. the built-in ``alertType`` text rules ``ALERT_TEXT_RULES`` → ``pattern:<regex>``;
5. ``other`` → ``default``.

The built-in id table holds only ids that Meraki documents and that the
fixtures show (``stopped_reporting``, ``started_reporting``, ``port_disconnected``,
``failover_event``, ``settings_changed``, ``rogue_ap``, ``amp_malware_detected``)
plus the counterparts named in issue 4's design (``port_connected``,
``uplink_status_changed``, ``amp_malware_blocked``). Nothing else is hard-coded:
in particular not ``ids_alerted`` (the fixture README, note 1: no documented IDS
type exists), which reaches ``security`` through the text rule ``\\bIDS\\b`` —
or through ``meraki.alert_types`` when an operator says so.

Uplink alerts (``failover_event``, ``uplink_status_changed``): ``alertData.uplink``
is the index of the uplink now in use (fixture README, note 3). ``"0"`` means
traffic is back on the primary uplink (``link_up``); any other value (or none)
means it failed over away from it (``link_down``). Both are about the primary
uplink, named as the inventory names it (``Internet 1`` or ``WAN 1``), else
``wan1``.

**Target** (each part one subject token, shortened with a digest when huge):

* the device is ``memory.device_by_serial(deviceSerial).name`` when the
  inventory knows the serial (or ``deviceName`` names an inventory device),
  else ``deviceName``, else the serial; the site is left to the enrich gate;
* ``device_down`` / ``device_up`` / ``config_change`` / ``other``: the device,
  falling back to the network (``networkName`` or ``networkId``);
* ``link_down`` / ``link_up``: ``device|interface``; a port alert's interface is
  the inventory's name for ``Port <portNum>`` (else ``Port <portNum>``);
* ``security``: ``network|client``, the client being ``alertData.clientMac``
  (lower-case) → ``alertData.clientIp`` → the host of ``alertData.srcIp`` →
  the device → ``unknown``; ``SensoryEvent.device`` is still the device.

**Payload**: the body as received without ``sharedSecret`` (top level, as
``reflex.handlers.security_webhook`` reads it) and with the secret scrubbed
everywhere else too (see ``scrub_secret``: a ``sharedSecret`` key at any depth
is dropped, a text holding ``meraki.shared_secret`` becomes ``REDACTED``, so a
custom payload template that echoes the secret in another field does not put
it on the bus; a target part holding it is ``REDACTED`` as well), plus
``classified_by``; link
events add ``if_name``, and ``port_num``/``status``/``prev_status`` (ports) or
``active_uplink`` (uplinks); with semantic memory, ``inventory`` says whether the
device was found (``device``) or not (``unknown``).

Imports: stdlib, netcortex.config/contracts, netcortex.thalamus.subjects, siblings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final

from netcortex.config import MerakiConfig
from netcortex.contracts.events import SensoryEvent, new_event_id
from netcortex.contracts.memory import SemanticMemory
from netcortex.sensory.webhook.schema import MerakiAlert
from netcortex.thalamus.subjects import bounded_part, sensory_subject

__all__ = [
    "ALERT_TEXT_RULES",
    "ALERT_TYPE_CLASSES",
    "REDACTED",
    "SOURCE",
    "UPLINK_ALERT_TYPES",
    "MerakiNormalizer",
    "scrub_secret",
]

#: ``SensoryEvent.source`` of every Meraki webhook event.
SOURCE: Final = "meraki.webhook"

#: Documented ``alertTypeId`` → event class (uplink ids are refined by ``alertData.uplink``).
ALERT_TYPE_CLASSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "stopped_reporting": "device_down",  # "APs/Switches/Appliances went down"
        "started_reporting": "device_up",  # "... came up"
        "port_disconnected": "link_down",  # "Switch port disconnected"
        "port_connected": "link_up",
        "failover_event": "link_down",  # "Uplink status changed"
        "uplink_status_changed": "link_down",
        "settings_changed": "config_change",  # "Settings changed"
        "rogue_ap": "security",  # "Rogue AP detected" (Air Marshal)
        "amp_malware_detected": "security",  # "Malware download detected"
        "amp_malware_blocked": "security",  # "Malware download blocked"
    }
)

#: ``alertTypeId`` values whose ``alertData.uplink`` names the uplink now in use.
UPLINK_ALERT_TYPES: Final = frozenset({"failover_event", "uplink_status_changed"})

#: Built-in ``alertType`` text rules ``(regex, event class)``, tried in order,
#: case-insensitive, for ids no table knows. Security first: "Rogue AP went
#: down" is about a rogue, not our AP.
ALERT_TEXT_RULES: Final[tuple[tuple[str, str], ...]] = (
    (r"\bIDS\b", "security"),
    (r"\bIPS\b", "security"),
    (r"intrusion", "security"),
    (r"malware", "security"),
    (r"rogue", "security"),
    (r"\bports? (?:disconnected|down|went down)\b", "link_down"),
    (r"\bports? (?:connected|came up)\b", "link_up"),
    (r"went down|offline|unreachable|stopped reporting", "device_down"),
    (r"came up|back online|started reporting", "device_up"),
    (r"settings changed|configuration changed", "config_change"),
)

#: What a payload text holding the shared secret becomes.
REDACTED: Final = "**********"
#: ``sharedSecret`` folded: a key equal to it is dropped at any depth.
_SECRET_KEY_FOLDED: Final = "sharedsecret"  # noqa: S105 - a field name, not a secret

_LINK_CLASSES: Final = frozenset({"link_down", "link_up"})
#: Inventory names tried, in order, for an MX's primary uplink; the fallback name.
_PRIMARY_UPLINK_NAMES: Final = ("Internet 1", "WAN 1")
_PRIMARY_UPLINK_FALLBACK: Final = "wan1"
_UNKNOWN: Final = "unknown"

# A subject is at most 1024 characters (thalamus.subjects) and one escaped
# character can take 9 (``%E3%80%80``): two parts of at most 448 encoded
# characters plus ``sensory.meraki.webhook.<class>.`` always fit. A longer part
# is shortened by ``bounded_part``, with a digest to stay distinct.
_MAX_TOKEN: Final = 448


@lru_cache(maxsize=16_384)
def _subject(event_class: str, parts: tuple[str, ...]) -> str:
    # Alerts repeat (device, interface) pairs; a cached subject is a dict hit.
    return sensory_subject(SOURCE, event_class, *parts)


def _text(value: object) -> str | None:
    """A non-blank string (numbers as text), else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _host(address: str) -> str:
    """The host of ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if address.startswith("["):
        host, sep, _ = address[1:].partition("]")
        return host if sep and host else address
    if address.count(":") == 1:
        host = address.partition(":")[0]
        return host or address
    return address


def scrub_secret(value: Any, secret: str) -> Any:
    """``value`` (decoded JSON) without the shared secret: a copy when something changed.

    A mapping key ``sharedSecret`` (any case, any depth) is dropped; a text that
    contains ``secret`` (a value, or a key) becomes ``REDACTED``. Anything that
    holds no secret is returned as is (the same object), so a clean body costs a
    walk and no copies. Recursive: the receiver admits 32 levels at most.
    """
    if isinstance(value, str):
        return REDACTED if secret in value else value
    if not isinstance(value, dict | list):
        return value
    changed = False
    if isinstance(value, dict):
        out_d: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and k.lower() == _SECRET_KEY_FOLDED:
                changed = True
                continue
            key = REDACTED if isinstance(k, str) and secret in k else k
            new = scrub_secret(v, secret)
            changed = changed or key is not k or new is not v
            out_d[key] = new
        return out_d if changed else value
    out_l = []
    for v in value:
        new = scrub_secret(v, secret)
        changed = changed or new is not v
        out_l.append(new)
    return out_l if changed else value


class MerakiNormalizer:
    """Classifies Meraki alerts and builds their ``SensoryEvent`` (pure CPU, no I/O).

    Args:
        config: the ``meraki`` section (``alert_types``, ``alert_type_patterns``).
        memory: when given, devices are canonicalised by serial (and interface
            names taken from the inventory); what it does not know stays as
            Meraki named it. Started and closed by its owner.
    """

    def __init__(self, config: MerakiConfig, memory: SemanticMemory | None = None) -> None:
        self._alert_types: dict[str, str] = dict(config.alert_types)
        self._config_rules = tuple(
            (re.compile(rule.pattern, re.IGNORECASE), rule.event_class)
            for rule in config.alert_type_patterns
        )
        self._builtin_rules = tuple(
            (re.compile(pattern, re.IGNORECASE), event_class)
            for pattern, event_class in ALERT_TEXT_RULES
        )
        self._memory = memory
        secret = config.shared_secret
        self._secret = secret.get_secret_value() if secret is not None else None

    def classify(
        self, alert_type_id: str | None, alert_type: str | None, alert_data: Mapping[str, Any]
    ) -> tuple[str, str]:
        """The event class of an alert and the rule that decided it.

        Args:
            alert_type_id: ``alertTypeId`` (``None`` or empty when absent).
            alert_type: ``alertType`` text (``None`` or empty when absent).
            alert_data: ``alertData`` (uplink alerts read ``uplink``).

        Returns:
            ``(event_class, rule)``; ``rule`` is ``config:alert_types``,
            ``alertTypeId:<id>``, ``config:alert_type_patterns:<regex>``,
            ``pattern:<regex>`` or ``default``. Never raises.
        """
        if alert_type_id:
            configured = self._alert_types.get(alert_type_id)
            if configured is not None:
                return configured, "config:alert_types"
            builtin = ALERT_TYPE_CLASSES.get(alert_type_id)
            if builtin is not None:
                if alert_type_id in UPLINK_ALERT_TYPES:
                    builtin = self._uplink_class(alert_data)
                return builtin, f"alertTypeId:{alert_type_id}"
        if alert_type:
            for rx, event_class in self._config_rules:
                if rx.search(alert_type):
                    return event_class, f"config:alert_type_patterns:{rx.pattern}"
            for rx, event_class in self._builtin_rules:
                if rx.search(alert_type):
                    return event_class, f"pattern:{rx.pattern}"
        return "other", "default"

    @staticmethod
    def _uplink_class(alert_data: Mapping[str, Any]) -> str:
        uplink = alert_data.get("uplink") if isinstance(alert_data, Mapping) else None
        return "link_up" if _text(uplink) == "0" else "link_down"

    def _device(self, alert: MerakiAlert) -> tuple[str | None, bool]:
        """``(device name, known to the inventory)``."""
        serial, name = alert.device_serial, alert.device_name
        memory = self._memory
        if memory is not None:
            device = memory.device_by_serial(serial) if serial else None
            if device is None and name:
                device = memory.device_by_name(name)
            if device is not None:
                return device.name, True
        return (name or serial), False

    def _inventory_interface(
        self, device: str | None, known: bool, names: tuple[str, ...]
    ) -> str | None:
        """The inventory's name for the first of ``names`` it knows on ``device``."""
        memory = self._memory
        if memory is not None and known and device is not None:
            for name in names:
                itf = memory.interface(device, name=name)
                if itf is not None:
                    return itf.name
        return None

    def _link(
        self,
        alert: MerakiAlert,
        device: str | None,
        known: bool,
        payload: dict[str, Any],
    ) -> str | None:
        """The interface of a link alert (payload fields added), or ``None``."""
        data = alert.alert_data
        port = _text(data.get("portNum"))
        if port is not None:
            name = f"Port {port}"
            interface = self._inventory_interface(device, known, (name,)) or name
            payload["if_name"] = interface
            payload["port_num"] = data.get("portNum")
            payload["status"] = data.get("status")
            payload["prev_status"] = data.get("prevStatus")
            return interface
        if "uplink" in data or alert.alert_type_id in UPLINK_ALERT_TYPES:
            interface = (
                self._inventory_interface(device, known, _PRIMARY_UPLINK_NAMES)
                or _PRIMARY_UPLINK_FALLBACK
            )
            payload["if_name"] = interface
            payload["active_uplink"] = data.get("uplink")
            return interface
        return None

    @staticmethod
    def _client(alert: MerakiAlert, device: str | None) -> str:
        data = alert.alert_data
        mac = _text(data.get("clientMac"))
        if mac is not None:
            return mac.lower()
        ip = _text(data.get("clientIp"))
        if ip is not None:
            return ip
        src = _text(data.get("srcIp"))
        if src is not None:
            return _host(src)
        return device or _UNKNOWN

    def normalize(
        self, alert: MerakiAlert, *, agent: str | None, received_at: datetime
    ) -> SensoryEvent:
        """Build the event for ``alert`` received from ``agent`` (the HTTP peer).

        Args:
            alert: a validated alert.
            agent: the sender's address, ``None`` when unknown.
            received_at: when the request arrived (timezone-aware UTC).

        Raises:
            netcortex.errors.InvalidSubject: the target cannot form a subject
                (cannot happen for a validated alert: parts are bounded).
        """
        event_class, rule = self.classify(alert.alert_type_id, alert.alert_type, alert.alert_data)
        device, known = self._device(alert)
        network = alert.network_name or alert.network_id
        payload = alert.body
        if self._secret is not None:
            # ``body`` is a fresh top-level copy: scrubbed or not, it is ours to extend.
            payload = scrub_secret(payload, self._secret)
        payload["classified_by"] = rule
        if self._memory is not None:
            payload["inventory"] = "device" if known else _UNKNOWN

        interface: str | None = None
        parts: tuple[str, ...]
        if event_class in _LINK_CLASSES:
            interface = self._link(alert, device, known, payload)
            first = device or network or _UNKNOWN
            parts = (first,) if interface is None else (first, interface)
        elif event_class == "security":
            parts = (network or _UNKNOWN, self._client(alert, device))
        else:
            parts = (device or network or _UNKNOWN,)
        secret = self._secret
        if secret is not None and any(secret in p for p in (*parts, device or "", interface or "")):
            # A template that names a device (or a client ...) with the secret: the
            # subject and target go to logs, outcomes and the 202 body.
            parts = tuple(REDACTED if secret in p else p for p in parts)
            if device is not None and secret in device:
                device = REDACTED
            if interface is not None and secret in interface:
                interface = REDACTED
        parts = tuple(bounded_part(p, _MAX_TOKEN) for p in parts)

        return SensoryEvent(
            id=new_event_id(),
            subject=_subject(event_class, parts),
            event_class=event_class,
            source=SOURCE,
            target="|".join(parts),
            device=None if device is None else bounded_part(device, _MAX_TOKEN),
            interface=None if interface is None else bounded_part(interface, _MAX_TOKEN),
            agent=agent,
            observed_at=alert.occurred_at or alert.sent_at,
            received_at=received_at,
            payload=payload,
        )
