"""Memory, semantic: the in-memory inventory snapshot and its lookup indexes.

Both backends (``FileInventory``, ``NetboxInventory``) get NetBox-shaped list
bodies (the ``results`` of ``/api/dcim/sites/``, ``/api/dcim/devices/`` …) and
hand them to ``build_snapshot``, which builds one immutable ``Snapshot``:

* every lookup the ``SemanticMemory`` contract asks for is one or two dict hits
  (the keys are normalised once, here, at build time);
* interface names get a second, *normalised* index (``gigabitethernet1/0/3``)
  so the common short forms (``Gi1/0/3``, ``Te1/1``, ``Po10``, ``Lo0``,
  ``Eth1/1``, ``Vl100`` …) resolve without a per-lookup regex: a lookup only
  lower-cases the query and maps its alphabetic prefix through a small table;
* a malformed entry (missing keys, wrong types, a bad address) is skipped,
  counted per list in ``Snapshot.skipped`` and logged (``inventory_entry_skipped``,
  the first few individually, then one ``inventory_entries_skipped`` summary);
  a build never raises on bad entries.

A backend swaps its whole snapshot reference at once, so a lookup sees either
the old or the new snapshot, never a half-built one (no locks needed).

``SnapshotMemory`` is the shared base class holding the current snapshot and
answering the contract's synchronous lookups from it. Lookups are total: input
of the wrong type (``None``, a number, a list from a webhook payload) finds
nothing instead of raising, so a receiver or gate never fails on it.

May import: ``contracts``, ``errors``, ``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from netcortex.contracts.memory import BgpSession, Device, Interface
from netcortex.metrics import Registry

__all__ = [
    "API_PATHS",
    "LIST_KINDS",
    "Snapshot",
    "SnapshotMemory",
    "build_snapshot",
    "canonical_address",
    "canonical_mac",
    "normalise_interface_name",
]

log = structlog.get_logger(__name__)

#: The NetBox list each snapshot input comes from, by kind (the order they are indexed in).
API_PATHS: Final[dict[str, str]] = {
    "sites": "/api/dcim/sites/",
    "devices": "/api/dcim/devices/",
    "interfaces": "/api/dcim/interfaces/",
    "cables": "/api/dcim/cables/",
    "ip_addresses": "/api/ipam/ip-addresses/",
    "bgp_sessions": "/api/plugins/bgp/bgpsession/",
}
#: The kinds of list a snapshot is built from.
LIST_KINDS: Final[tuple[str, ...]] = tuple(API_PATHS)

#: Individually logged skipped entries per build (the rest are only counted).
_MAX_LOGGED_SKIPS: Final = 10

# Interface-name prefixes (lower-case, no spaces) → the canonical long prefix.
# The canonical long prefixes map to themselves. Add vendors here, not in lookups.
_IFNAME_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "gigabitethernet": ("gi", "gig", "ge", "gigabit", "gige"),
    "twogigabitethernet": ("tw", "twogig"),
    "fivegigabitethernet": ("fi", "fivegig"),
    "tengigabitethernet": ("te", "ten", "tengig", "tengige"),
    "twentyfivegige": ("twe", "twentyfivegigabitethernet"),
    "fortygigabitethernet": ("fo", "fortygig", "fortygige"),
    "fiftygige": ("fif",),
    "hundredgige": ("hu", "hundredgigabitethernet"),
    "fourhundredgige": ("fh",),
    "fastethernet": ("fa", "fe"),
    "ethernet": ("eth", "et", "e"),
    "port-channel": ("po", "portchannel"),
    "bundle-ether": ("be",),
    "loopback": ("lo", "loop"),
    "vlan": ("vl",),
    "tunnel": ("tu",),
    "serial": ("se",),
    "management": ("mgmt", "ma"),
    "appgigabitethernet": ("ap",),
}
_IFNAME_PREFIX: Final[dict[str, str]] = {
    alias: long for long, aliases in _IFNAME_ALIASES.items() for alias in (long, *aliases)
}


def normalise_interface_name(name: str) -> str:
    """The normalised form of an interface name: ``Gi1/0/3`` and
    ``GigabitEthernet1/0/3`` both give ``gigabitethernet1/0/3``.

    Lower-cases, drops spaces, and replaces the alphabetic prefix (up to the
    first digit) by its canonical long form when it is a known abbreviation; an
    unknown prefix is kept as is (``Port 1`` → ``port1``). Pure, no regex.
    """
    s = name.lower().replace(" ", "")
    for i, ch in enumerate(s):
        if ch.isdigit():
            prefix = s[:i]
            return _IFNAME_PREFIX.get(prefix, prefix) + s[i:]
    return _IFNAME_PREFIX.get(s, s)


def canonical_address(address: str) -> str | None:
    """``address`` in canonical ``ipaddress`` text, prefix length (``/24``) and
    IPv6 zone (``%eth0``) stripped; ``None`` when it is not an IP address."""
    text = address.strip().partition("/")[0].partition("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


_HEX: Final = frozenset("0123456789abcdef")


def canonical_mac(mac: str) -> str | None:
    """``mac`` as lower-case colon form (``00:11:22:aa:bb:cc``) from any common
    spelling (colons, dashes, Cisco dots, bare hex, any case); ``None`` if invalid."""
    h = mac.strip().lower()
    for sep in (":", "-", ".", " "):
        h = h.replace(sep, "")
    if len(h) != 12 or not _HEX.issuperset(h):
        return None
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


@dataclass(slots=True)
class Snapshot:
    """One immutable-by-convention view of the inventory with its indexes.

    Attributes:
        taken_at: ``time.monotonic()`` when the source data was read.
        taken_wall: ``time.time()`` at the same moment (for gauges and logs).
        counts: objects indexed per kind (``devices``, ``interfaces`` …).
        skipped: malformed entries skipped per kind.
    """

    taken_at: float
    taken_wall: float
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, Device] = field(default_factory=dict)
    by_address: dict[str, Device] = field(default_factory=dict)
    by_serial: dict[str, Device] = field(default_factory=dict)
    by_mac: dict[str, Device] = field(default_factory=dict)
    if_by_index: dict[tuple[str, int], Interface] = field(default_factory=dict)
    if_by_name: dict[tuple[str, str], Interface] = field(default_factory=dict)
    if_by_norm: dict[tuple[str, str], Interface] = field(default_factory=dict)
    peers: dict[tuple[str, str], Interface] = field(default_factory=dict)
    bgp: dict[tuple[str, str], BgpSession] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot with nothing in it, infinitely old (before the first load)."""
        return cls(taken_at=-math.inf, taken_wall=0.0)

    # ----------------------------------------------------------- lookups (dict hits)

    def interface(
        self, device: str, *, if_index: int | None = None, name: str | None = None
    ) -> Interface | None:
        """See ``SemanticMemory.interface``: ifIndex first, then exact name, then
        the normalised (short or long) name. Input of the wrong type finds nothing."""
        if not isinstance(device, str):
            return None
        if not isinstance(if_index, int) or isinstance(if_index, bool):
            if_index = None
        if not isinstance(name, str):
            name = None
        if if_index is not None:
            hit = self.if_by_index.get((device, if_index))
            if hit is not None or name is None:
                return hit
        if name is None:
            return None
        hit = self.if_by_name.get((device, name))
        if hit is None:
            hit = self.if_by_norm.get((device, normalise_interface_name(name)))
        return hit

    def cable_peer(self, device: str, interface: str) -> Interface | None:
        """See ``SemanticMemory.cable_peer`` (``interface`` may be a short name)."""
        if not (isinstance(device, str) and isinstance(interface, str)):
            return None
        hit = self.peers.get((device, interface))
        if hit is None:
            own = self.if_by_norm.get((device, normalise_interface_name(interface)))
            if own is not None:
                hit = self.peers.get((device, own.name))
        return hit

    def device_by_address(self, address: str) -> Device | None:
        """See ``SemanticMemory.device_by_address`` (non-text input finds nothing)."""
        if not isinstance(address, str):
            return None
        hit = self.by_address.get(address)
        if hit is None:
            canon = canonical_address(address)
            if canon is not None:
                hit = self.by_address.get(canon)
        return hit

    def device_by_mac(self, mac: str) -> Device | None:
        """See ``SemanticMemory.device_by_mac`` (non-text input finds nothing)."""
        if not isinstance(mac, str):
            return None
        hit = self.by_mac.get(mac)
        if hit is None:
            canon = canonical_mac(mac)
            if canon is not None:
                hit = self.by_mac.get(canon)
        return hit

    def bgp_session(self, device: str, remote_address: str) -> BgpSession | None:
        """See ``SemanticMemory.bgp_session`` (non-text input finds nothing)."""
        if not (isinstance(device, str) and isinstance(remote_address, str)):
            return None
        hit = self.bgp.get((device, remote_address))
        if hit is None:
            canon = canonical_address(remote_address)
            if canon is not None:
                hit = self.bgp.get((device, canon))
        return hit


# ------------------------------------------------------------------------- building


class _Skips:
    """Counts and logs skipped entries for one build."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: dict[str, int] = {}
        self.logged = 0

    def skip(self, kind: str, entry: object, reason: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.logged < _MAX_LOGGED_SKIPS:
            self.logged += 1
            entry_id = entry.get("id") if isinstance(entry, Mapping) else None
            log.warning(
                "inventory_entry_skipped",
                source=self.source,
                kind=kind,
                entry_id=entry_id,
                reason=reason,
            )


def _slug(obj: Any) -> str | None:
    """The ``slug`` of a nested brief object, or ``None`` (absent / null)."""
    if obj is None:
        return None
    slug = obj["slug"]
    if not isinstance(slug, str):
        raise TypeError("slug is not a string")
    return slug or None


def _name(obj: Any) -> str:
    name = obj["name"]
    if not isinstance(name, str) or not name:
        raise ValueError("missing name")
    return name


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value or None


def _address_of(obj: Any) -> str:
    """Canonical address of a brief IP object (``{"address": "192.0.2.1/24"}``)."""
    raw = obj["address"]
    if not isinstance(raw, str):
        raise TypeError("address is not text")
    canon = canonical_address(raw)
    if canon is None:
        raise ValueError(f"not an IP address: {raw[:60]!r}")
    return canon


def _asn(obj: Any) -> int | None:
    if obj is None:
        return None
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    asn = obj["asn"]
    if not isinstance(asn, int) or isinstance(asn, bool):
        raise TypeError("asn is not an integer")
    return asn


def _iter_entries(items: Iterable[Any], kind: str, skips: _Skips) -> Iterable[Mapping[str, Any]]:
    for entry in items:
        if isinstance(entry, Mapping):
            yield entry
        else:
            skips.skip(kind, entry, "not an object")


_ENTRY_ERRORS: Final = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _interface_macs(entry: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(primary MAC, every MAC) of a NetBox interface, canonical; bad ones dropped."""
    primary: str | None = None
    found: list[str] = []
    raw = entry.get("mac_address")
    if isinstance(raw, str):
        primary = canonical_mac(raw)
    pm = entry.get("primary_mac_address")
    if primary is None and isinstance(pm, Mapping) and isinstance(pm.get("mac_address"), str):
        primary = canonical_mac(pm["mac_address"])
    if primary is not None:
        found.append(primary)
    for m in entry.get("mac_addresses") or ():
        if isinstance(m, Mapping) and isinstance(m.get("mac_address"), str):
            canon = canonical_mac(m["mac_address"])
            if canon is not None and canon not in found:
                found.append(canon)
    return primary, found


def build_snapshot(
    lists: Mapping[str, Sequence[Any]],
    *,
    source: str,
    taken_at: float | None = None,
    taken_wall: float | None = None,
) -> Snapshot:
    """Index NetBox-shaped list results into a new ``Snapshot``.

    Args:
        lists: ``results`` per kind (keys from ``LIST_KINDS``; missing kinds are
            empty). Items are NetBox 4.x API objects (brief nested objects).
        source: names the origin in log lines (a file name or a redacted URL).
        taken_at, taken_wall: when the data was read (default: now).

    Never raises on bad entries: each is skipped, counted in ``skipped`` and logged.
    """
    skips = _Skips(source)
    snap = Snapshot(
        taken_at=time.monotonic() if taken_at is None else taken_at,
        taken_wall=time.time() if taken_wall is None else taken_wall,
    )

    for site in _iter_entries(lists.get("sites", ()), "sites", skips):
        try:
            slug = _slug(site)
            if slug is None:
                raise ValueError("missing slug")
            snap.sites[slug] = _name(site)
        except _ENTRY_ERRORS as exc:
            skips.skip("sites", site, str(exc))

    # Interfaces and IPs first (raw), because a Device needs its addresses when built.
    ifaces: list[tuple[Interface, list[str], Mapping[str, Any]]] = []
    for entry in _iter_entries(lists.get("interfaces", ()), "interfaces", skips):
        try:
            if_index = (entry.get("custom_fields") or {}).get("snmp_ifindex")
            if if_index is not None and (
                not isinstance(if_index, int) or isinstance(if_index, bool)
            ):
                raise TypeError("custom_fields.snmp_ifindex is not an integer")
            primary, macs = _interface_macs(entry)
            iface = Interface(
                device=_name(entry["device"]),
                name=_name(entry),
                if_index=if_index,
                mac=primary,
                description=_opt_str(entry.get("description")),
                inventory_id=entry.get("id"),
            )
            ifaces.append((iface, macs, entry))
        except _ENTRY_ERRORS as exc:
            skips.skip("interfaces", entry, str(exc))

    addresses: dict[str, list[str]] = {}
    for entry in _iter_entries(lists.get("ip_addresses", ()), "ip_addresses", skips):
        try:
            canon = _address_of(entry)
            owner = entry.get("assigned_object")
            if owner is None or entry.get("assigned_object_type") != "dcim.interface":
                continue  # unassigned, or on a VM interface / FHRP group: no device
            addresses.setdefault(_name(owner["device"]), []).append(canon)
        except _ENTRY_ERRORS as exc:
            skips.skip("ip_addresses", entry, str(exc))

    for entry in _iter_entries(lists.get("devices", ()), "devices", skips):
        try:
            name = _name(entry)
            primary_ip: str | None = None
            own = addresses.get(name, [])
            for key in ("primary_ip", "primary_ip4", "primary_ip6", "oob_ip"):
                brief = entry.get(key)
                if brief is not None:
                    canon = _address_of(brief)
                    if key == "primary_ip":
                        primary_ip = canon
                    if canon not in own:
                        own.append(canon)
            serial = _opt_str(entry.get("serial"))
            role = entry.get("role", entry.get("device_role"))
            tags = tuple(t["slug"] for t in entry.get("tags") or () if t.get("slug"))
            device = Device(
                name=name,
                site=_slug(entry.get("site")),
                role=_slug(role),
                serial=serial,
                primary_ip=primary_ip,
                addresses=tuple(own),
                tags=tags,
                platform=_slug(entry.get("platform")),
                inventory_id=entry.get("id"),
            )
        except _ENTRY_ERRORS as exc:
            skips.skip("devices", entry, str(exc))
            continue
        if name in snap.by_name:
            skips.skip("devices", entry, f"duplicate device name {name!r}")
            continue
        snap.by_name[name] = device
        for addr in device.addresses:
            snap.by_address.setdefault(addr, device)
        if serial is not None:
            snap.by_serial.setdefault(serial, device)
            snap.by_serial.setdefault(serial.upper(), device)

    for iface, macs, entry in ifaces:
        owner = snap.by_name.get(iface.device)
        if owner is None:
            skips.skip("interfaces", entry, f"unknown device {iface.device!r}")
            continue
        if_key = (iface.device, iface.name)
        if if_key in snap.if_by_name:
            skips.skip("interfaces", entry, f"duplicate interface {iface.name!r}")
            continue
        snap.if_by_name[if_key] = iface
        snap.if_by_norm.setdefault((iface.device, normalise_interface_name(iface.name)), iface)
        if iface.if_index is not None:
            snap.if_by_index.setdefault((iface.device, iface.if_index), iface)
        for mac in macs:
            snap.by_mac.setdefault(mac, owner)

    # Cable peers: link_peers on the interfaces, then the cables list for the rest.
    def _peer(obj: Any) -> Interface:
        dev, name = _name(obj["device"]), _name(obj)
        known = snap.if_by_name.get((dev, name))
        return known or Interface(device=dev, name=name, inventory_id=obj.get("id"))

    for iface, _macs, entry in ifaces:
        try:
            peers = entry.get("link_peers") or ()
            if peers and entry.get("link_peers_type", "dcim.interface") == "dcim.interface":
                snap.peers[(iface.device, iface.name)] = _peer(peers[0])
        except _ENTRY_ERRORS as exc:
            skips.skip("interfaces", entry, f"bad link_peers: {exc}")

    for cable in _iter_entries(lists.get("cables", ()), "cables", skips):
        try:
            ends = [
                [
                    _peer(t["object"])
                    for t in cable[side] or ()
                    if t.get("object_type") == "dcim.interface" and t.get("object") is not None
                ]
                for side in ("a_terminations", "b_terminations")
            ]
            if ends[0] and ends[1]:
                a, b = ends[0][0], ends[1][0]
                snap.peers.setdefault((a.device, a.name), b)
                snap.peers.setdefault((b.device, b.name), a)
        except _ENTRY_ERRORS as exc:
            skips.skip("cables", cable, str(exc))

    for entry in _iter_entries(lists.get("bgp_sessions", ()), "bgp_sessions", skips):
        try:
            local = entry.get("local_address")
            session = BgpSession(
                device=_name(entry["device"]),
                local_address=_address_of(local) if local is not None else None,
                remote_address=_address_of(entry["remote_address"]),
                local_asn=_asn(entry.get("local_as")),
                remote_asn=_asn(entry.get("remote_as")),
                name=_opt_str(entry.get("name")),
                inventory_id=entry.get("id"),
            )
        except _ENTRY_ERRORS as exc:
            skips.skip("bgp_sessions", entry, str(exc))
            continue
        snap.bgp.setdefault((session.device, session.remote_address), session)

    snap.counts = {
        "sites": len(snap.sites),
        "devices": len(snap.by_name),
        "interfaces": len(snap.if_by_name),
        "cables": len(lists.get("cables", ())) - skips.counts.get("cables", 0),
        "ip_addresses": len(lists.get("ip_addresses", ())) - skips.counts.get("ip_addresses", 0),
        "bgp_sessions": len(snap.bgp),
    }
    snap.skipped = dict(skips.counts)
    if skips.counts:
        log.warning("inventory_entries_skipped", source=source, skipped=snap.skipped)
    return snap


# --------------------------------------------------------------- shared base class


class SnapshotMemory:
    """Base of the inventory backends: holds the current ``Snapshot`` and answers
    the ``SemanticMemory`` lookups from it (synchronous dict hits, no I/O).

    Subclasses load snapshots and call ``_install`` (one reference swap). Metrics,
    labelled ``backend``: ``netcortex_inventory_sync_seconds`` (histogram),
    ``netcortex_inventory_sync_failures_total``, ``netcortex_inventory_objects{kind}``,
    ``netcortex_inventory_skipped_total{kind}``,
    ``netcortex_inventory_snapshot_age_seconds`` (refreshed on every sync attempt
    and every ``snapshot_age()`` call) and ``netcortex_inventory_snapshot_timestamp_seconds``.
    """

    _backend: str = "inventory"

    def __init__(self, metrics: Registry | None) -> None:
        self._snap = Snapshot.empty()
        reg = metrics if metrics is not None else Registry()
        self.metrics = reg
        self._m_sync = reg.histogram(
            "netcortex_inventory_sync_seconds",
            "Duration of successful inventory syncs",
            ["backend"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
        )
        self._m_fail = reg.counter(
            "netcortex_inventory_sync_failures_total",
            "Inventory syncs that failed (the previous snapshot stays in use)",
            ["backend"],
        )
        self._m_objects = reg.gauge(
            "netcortex_inventory_objects",
            "Objects in the inventory snapshot in use",
            ["backend", "kind"],
        )
        self._m_skipped = reg.counter(
            "netcortex_inventory_skipped_total",
            "Malformed inventory entries skipped while indexing",
            ["backend", "kind"],
        )
        self._m_age = reg.gauge(
            "netcortex_inventory_snapshot_age_seconds",
            "Age of the inventory snapshot in use",
            ["backend"],
        )
        self._m_ts = reg.gauge(
            "netcortex_inventory_snapshot_timestamp_seconds",
            "Unix time the inventory snapshot in use was read",
            ["backend"],
        )

    def _install(self, snap: Snapshot, duration: float) -> None:
        """Make ``snap`` the snapshot in use (one reference swap) and record metrics."""
        self._snap = snap
        self._m_sync.observe(duration, backend=self._backend)
        for kind, n in snap.counts.items():
            self._m_objects.set(float(n), backend=self._backend, kind=kind)
        for kind, n in snap.skipped.items():
            self._m_skipped.inc(float(n), backend=self._backend, kind=kind)
        self._m_ts.set(snap.taken_wall, backend=self._backend)
        self._m_age.set(0.0, backend=self._backend)

    def _failed(self) -> None:
        self._m_fail.inc(backend=self._backend)
        self.snapshot_age()

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot in use (read-only by convention)."""
        return self._snap

    # ------------------------------------------------------------- SemanticMemory

    def devices(self) -> Sequence[Device]:
        """Every device in the snapshot in use, in inventory order (empty before
        the first load); a tuple, so later refreshes do not change it."""
        return tuple(self._snap.by_name.values())

    def device_by_address(self, address: str) -> Device | None:
        """The device owning ``address`` (any assigned IP, v4 or v6, any prefix
        length or spelling), or ``None``."""
        return self._snap.device_by_address(address)

    def device_by_name(self, name: str) -> Device | None:
        """The device called ``name`` (exact), or ``None``."""
        return self._snap.by_name.get(name) if isinstance(name, str) else None

    def device_by_serial(self, serial: str) -> Device | None:
        """The device with serial ``serial`` (exact, or upper-cased), or ``None``."""
        if not isinstance(serial, str):
            return None
        snap = self._snap
        return snap.by_serial.get(serial) or snap.by_serial.get(serial.upper())

    def device_by_mac(self, mac: str) -> Device | None:
        """The device with an interface having MAC ``mac`` (any spelling), or ``None``."""
        return self._snap.device_by_mac(mac)

    def interface(
        self, device: str, *, if_index: int | None = None, name: str | None = None
    ) -> Interface | None:
        """The interface of ``device`` by ifIndex, else by name (full, or a short
        form such as ``Gi1/0/3``), or ``None``."""
        return self._snap.interface(device, if_index=if_index, name=name)

    def cable_peer(self, device: str, interface: str) -> Interface | None:
        """The interface at the far end of the cable on ``device``/``interface``
        (full or short name), or ``None`` (no cable, or not to an interface)."""
        return self._snap.cable_peer(device, interface)

    def bgp_session(self, device: str, remote_address: str) -> BgpSession | None:
        """The BGP session of ``device`` towards ``remote_address``, or ``None``."""
        return self._snap.bgp_session(device, remote_address)

    def snapshot_age(self) -> float:
        """Seconds since the snapshot in use was read (``inf`` before the first)."""
        age = time.monotonic() - self._snap.taken_at
        self._m_age.set(age, backend=self._backend)
        return age
