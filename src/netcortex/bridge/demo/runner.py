"""Bridge, demo: play the scenario against an engine and report what it made of it.

``run_demo`` finds the engine the config describes (its ``/healthz`` answers) or
starts an embedded one (``Engine`` on free ports in a temporary directory with
the demo network), sends every beat of the scenario — real SNMPv1 traps over UDP
to the trap receiver, real webhook POSTs to ``/webhooks/meraki`` — and reads the
results back over the HTTP API (``/api/v1/outcomes`` and ``/api/v1/incidents``
with ``since`` = the demo's start, per demo device), waiting for each beat's
outcomes and each act's incidents with a deadline, never a fixed sleep.
May import everything (bridge).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

import httpx
import yaml

from netcortex.bridge.demo.scenario import (
    DEVICES,
    Act,
    Expected,
    ExpectedIncident,
    Trap,
    Webhook,
    build_scenario,
    encode_trap,
    expected_outcome,
    scenario_devices,
)
from netcortex.config import Config, load_config

__all__ = ["DemoError", "Report", "Target", "demo_network_text", "render_report", "run_demo"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
_SHORT_ID: Final = 12
_POLL: Final = 0.05
_PROGRESS_EVERY: Final = 2.0
_LOCAL: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class DemoError(Exception):
    """The demo cannot run (message for the operator); ``status`` is the exit code."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def demo_network_text() -> str:
    """The embedded demo network (``network.yaml``, package data) as YAML text."""
    return resources.files("netcortex.bridge.demo").joinpath("network.yaml").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the demo sends and reads: one engine's addresses and secrets."""

    base_url: str
    api_token: str
    trap_host: str
    trap_port: int
    community: str
    meraki_secret: str | None
    flap_high: int
    source: str


def _host(host: str) -> str:
    return _LOCAL.get(host, host)


def target_from_config(config: Config, *, http_port: int | None = None) -> Target:
    """The engine ``config`` describes (``http_port``/trap port as bound, when known).

    Raises:
        DemoError: the config has no HTTP server, trap receiver, community or API token.
    """
    if not config.http.enabled:
        raise DemoError(f"{config.source}: http.enabled is false: no API to read results from")
    if not config.trap.enabled or not config.trap.communities:
        raise DemoError(f"{config.source}: the trap receiver is off or accepts no community")
    if config.http.api_token is None:
        raise DemoError(
            f"{config.source}: http.api_token is not set; the demo reads the engine's "
            "outcomes and incidents over the API with it"
        )
    host = _host(config.http.host)
    url_host = f"[{host}]" if ":" in host else host
    secret = config.meraki.shared_secret
    return Target(
        base_url=f"http://{url_host}:{http_port or config.http.port}",
        api_token=config.http.api_token.get_secret_value(),
        trap_host=_host(config.trap.host),
        trap_port=config.trap.port,
        community=config.trap.communities[0].get_secret_value(),
        meraki_secret=(
            secret.get_secret_value() if secret is not None and config.meraki.enabled else None
        ),
        flap_high=config.association.flap_high,
        source=config.source,
    )


async def engine_answers(base_url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET base_url/healthz`` answers 200 within ``timeout`` seconds."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(f"{base_url}/healthz")
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


# ----------------------------------------------------------------------- results


@dataclass(slots=True)
class ActResult:
    """What one act sent and got back."""

    title: str
    story: str
    traps: int = 0
    webhooks: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    aborted: bool = False


@dataclass(slots=True)
class Report:
    """The whole demo: where it ran, the acts, the outcomes and incidents it produced."""

    mode: str
    base_url: str
    trap_address: str
    source: str
    started_at: datetime
    acts: list[ActResult] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    recorded: str | None = None
    recorded_events: int | None = None

    @property
    def events(self) -> int:
        """Events sent and accepted (traps + webhooks)."""
        return sum(a.traps + a.webhooks for a in self.acts)

    @property
    def ok(self) -> bool:
        """Every expected outcome and incident appeared."""
        return not self.missing


# ----------------------------------------------------------------------- the player

_R = TypeVar("_R")


def _is_found(hit: object) -> bool:
    return hit is not None


class _Player:
    """Sends the beats to one target and waits for their results over the API."""

    def __init__(
        self,
        target: Target,
        client: httpx.AsyncClient,
        *,
        timeout: float,
        progress: TextIO,
    ) -> None:
        self.target = target
        self.client = client
        self.timeout = timeout
        self.progress = progress
        self.devices = scenario_devices()
        self.started = datetime.now(UTC)
        self.since = self.started.isoformat()
        self.claimed: dict[str, dict[str, Any]] = {}  # outcome id → outcome (this run's)
        self.sock = socket.socket(
            socket.AF_INET6 if ":" in target.trap_host else socket.AF_INET, socket.SOCK_DGRAM
        )
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.get(path, params=params)
        if resp.status_code != 200:
            raise DemoError(f"GET {path} answered {resp.status_code}: {resp.text[:200]}")
        body: dict[str, Any] = resp.json()
        return body

    async def _paged(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        query = dict(params)
        items: list[dict[str, Any]] = []
        while True:
            page = await self._get(path, query)
            items.extend(page["items"])
            if not page.get("next_cursor"):
                return items
            query["cursor"] = page["next_cursor"]

    async def outcomes_since(self) -> list[dict[str, Any]]:
        """Every outcome of a demo device recorded since the demo started, oldest first."""
        found: dict[str, dict[str, Any]] = {}
        for device in self.devices:
            params = {"since": self.since, "device": device}
            for o in await self._paged("/api/v1/outcomes", params):
                found[o["outcome_id"]] = o
        return sorted(found.values(), key=lambda o: (o["recorded_at"], o["outcome_id"]))

    async def incidents_since(self) -> list[dict[str, Any]]:
        """Every incident involving a demo device changed since the demo started."""
        found: dict[str, dict[str, Any]] = {}
        for device in self.devices:
            params = {"since": self.since, "device": device}
            for i in await self._paged("/api/v1/incidents", params):
                found[i["id"]] = i
        return sorted(found.values(), key=lambda i: (i["opened_at"], i["id"]))

    async def _wait(
        self, what: str, check: Callable[[], Awaitable[_R]], done: Callable[[_R], bool]
    ) -> _R:
        """Poll ``check()`` until ``done(result)`` or the deadline; the last result."""
        deadline = time.monotonic() + self.timeout
        said = time.monotonic()
        while True:
            result = await check()
            if done(result) or time.monotonic() >= deadline:
                return result
            if time.monotonic() - said >= _PROGRESS_EVERY:
                said = time.monotonic()
                print(f"  … still waiting for {what}", file=self.progress, flush=True)
            await asyncio.sleep(_POLL)

    async def send(self, item: Trap | Webhook) -> None:
        if isinstance(item, Trap):
            data = encode_trap(item, self.target.community)
            address = (self.target.trap_host, self.target.trap_port)
            while True:  # a UDP send on a non-blocking socket: full buffer → retry shortly
                try:
                    self.sock.sendto(data, address)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                else:
                    return
        if self.target.meraki_secret is None:
            raise DemoError(
                f"{self.target.source}: meraki.shared_secret is not set (or meraki.enabled "
                "is false): the engine refuses every webhook"
            )
        now = datetime.now(UTC)
        body = dict(item.body)
        body["sentAt"] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body["sharedSecret"] = self.target.meraki_secret
        resp = await self.client.post("/webhooks/meraki", json=body)
        if resp.status_code >= 300:
            raise DemoError(f"POST /webhooks/meraki answered {resp.status_code}: {resp.text[:200]}")

    def _claim(self, expected: list[Expected], outcomes: list[dict[str, Any]]) -> list[Any]:
        """Match each expected outcome to a distinct outcome not claimed before."""
        free = [o for o in outcomes if o["outcome_id"] not in self.claimed]
        got: list[Any] = []
        for exp in expected:
            hit = next((o for o in free if exp.matches(o)), None)
            if hit is not None:
                free.remove(hit)
            got.append(hit)
        return got

    async def play_act(self, act: Act) -> ActResult:
        result = ActResult(act.title, act.story)
        for beat in act.beats:
            expected = [expected_outcome(s) for s in beat.sends]
            for item in beat.sends:
                await self.send(item)
                if isinstance(item, Trap):
                    result.traps += 1
                else:
                    result.webhooks += 1
            what = ", ".join(f"{e.handler} {e.target or e.device}" for e in expected)

            def all_there(found: list[dict[str, Any]], exp: list[Expected] = expected) -> bool:
                return all(h is not None for h in self._claim(exp, found))

            outcomes = await self._wait(f"outcomes: {what}", self.outcomes_since, all_there)
            for exp, hit in zip(expected, self._claim(expected, outcomes), strict=True):
                if hit is None:
                    result.missing.append(
                        f"outcome {exp.handler} on {exp.target or exp.device} "
                        f"(no such outcome within {self.timeout:g} s)"
                    )
                else:
                    self.claimed[hit["outcome_id"]] = hit
                    result.outcomes.append(hit)
            if result.missing:  # the story cannot go on without its facts
                result.missing.extend(await self.unknown_devices())
                result.aborted = True
                return result
        for want in act.incidents:

            async def look(want: ExpectedIncident = want) -> dict[str, Any] | None:
                return await self.find_incident(want)

            found = await self._wait(
                f"incident {want.rule} {want.root} ({want.state})", look, _is_found
            )
            if found is None:
                result.missing.append(
                    f"incident {want.rule} rooted at {want.root}, {want.state} "
                    f"(not there within {self.timeout:g} s)"
                )
            else:
                result.incidents.append(found["id"])
                result.labels.append(f"{found['rule']} {found['state']}")
        return result

    async def unknown_devices(self) -> list[str]:
        """A hint when the engine stored outcomes under the demo devices' raw addresses
        (its inventory lacks the demo network)."""
        raw = []
        for name, address in DEVICES.items():
            found = await self._paged(
                "/api/v1/outcomes", {"since": self.since, "device": address, "limit": 10}
            )
            if found:
                raw.append(f"{address} ({name})")
        if not raw:
            return []
        return [
            f"the engine's inventory does not know {', '.join(raw)}: it stored outcomes "
            "under the raw address; give it the demo network (inventory.path: "
            "examples/inventory.yaml) or use --embedded"
        ]

    async def find_incident(self, want: ExpectedIncident) -> dict[str, Any] | None:
        """The incident of ``want`` changed since the start — or, for one that changes
        quietly (a flapping member absorbs its changes), still open from before."""
        device = next(iter(sorted(want.members))).partition("|")[0]
        candidates = await self._paged(
            "/api/v1/incidents", {"since": self.since, "device": device, "rule": want.rule}
        )
        if want.state == "open":
            candidates += await self._paged(
                "/api/v1/incidents", {"state": "open", "device": device, "rule": want.rule}
            )
        ours = set(self.claimed)
        best: tuple[int, str] | None = None
        hit: dict[str, Any] | None = None
        for inc in candidates:
            if inc["root"] != want.root or inc["state"] != want.state:
                continue
            if want.flapping is not None and inc.get("flapping") is not want.flapping:
                continue
            if not want.members <= set(inc["members"]):
                continue
            rank = (len(ours.intersection(inc["evidence"])), inc["updated_at"])
            if best is None or rank > best:
                best, hit = rank, inc
        return hit

    async def evidence(self, incidents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The outcome behind every evidence id (this run's, else fetched by id)."""
        known = dict(self.claimed)
        for inc in incidents:
            for oid in inc["evidence"]:
                if oid in known:
                    continue
                resp = await self.client.get(f"/api/v1/outcomes/{oid}")
                if resp.status_code == 200:
                    known[oid] = resp.json()
        return known


async def play(
    target: Target,
    *,
    mode: str,
    timeout: float,
    progress: TextIO,
    acts: Sequence[Act] | None = None,
) -> Report:
    """Play the scenario against ``target`` and collect the report."""
    scenario = list(acts) if acts is not None else build_scenario(target.flap_high)
    headers = {"Authorization": f"Bearer {target.api_token}"}
    async with httpx.AsyncClient(base_url=target.base_url, headers=headers, timeout=10.0) as client:
        player = _Player(target, client, timeout=timeout, progress=progress)
        report = Report(
            mode=mode,
            base_url=target.base_url,
            trap_address=f"udp {target.trap_host}:{target.trap_port}",
            source=target.source,
            started_at=player.started,
        )
        try:
            for n, act in enumerate(scenario, 1):
                result = await player.play_act(act)
                report.acts.append(result)
                report.missing.extend(result.missing)
                print(_act_line(n, len(scenario), result), file=progress, flush=True)
                if result.aborted:
                    print(
                        f"stopping after act {n}: its outcomes did not all appear",
                        file=progress,
                        flush=True,
                    )
                    break
            report.outcomes = await player.outcomes_since()
            incidents = {i["id"]: i for i in await player.incidents_since()}
            for a in report.acts:  # those found outside `since` (an ongoing flap)
                for iid in a.incidents:
                    if iid not in incidents:
                        resp = await client.get(f"/api/v1/incidents/{iid}")
                        if resp.status_code == 200:
                            incidents[iid] = resp.json()
            order = {iid: n for n, iid in enumerate(i for a in report.acts for i in a.incidents)}
            report.incidents = sorted(
                incidents.values(),
                key=lambda i: (order.get(i["id"], len(order)), i["opened_at"], i["id"]),
            )
            report.evidence = await player.evidence(report.incidents)
        finally:
            player.close()
    return report


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _act_line(n: int, total: int, act: ActResult) -> str:
    sent = []
    if act.traps:
        sent.append(_plural(act.traps, "trap"))
    if act.webhooks:
        sent.append(_plural(act.webhooks, "webhook"))
    line = f"[{n}/{total}] {act.title}: {act.story} — {' + '.join(sent)} → "
    line += _plural(len(act.outcomes), "outcome")
    if act.labels:
        line += f" → {', '.join(act.labels)}"
    if act.missing:
        line += f" (MISSING {len(act.missing)})"
    return line


# ----------------------------------------------------------------------- embedded


def _embedded_config(tmp: Path) -> Config:
    network = tmp / "demo-network.yaml"
    network.write_text(demo_network_text(), encoding="utf-8")
    doc: dict[str, Any] = {
        "bus": {"backend": "memory"},
        "store": {"backend": "sqlite", "sqlite_path": str(tmp / "netcortex.db")},
        "trap": {"host": "127.0.0.1", "port": 0, "communities": ["public"]},
        "http": {"host": "127.0.0.1", "port": 0, "api_token": secrets.token_hex(24)},
        "meraki": {"shared_secret": secrets.token_hex(24)},
        "inventory": {"backend": "file", "path": str(network)},
        "log": {"level": "warning", "format": "json", "stats_interval": 0},
    }
    path = tmp / "netcortex.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_config(path, {})  # the caller's NETCORTEX_* variables do not apply


async def play_embedded(*, timeout: float, progress: TextIO, record: Path | None) -> Report:
    """Start an ``Engine`` on free ports in a temporary directory, play, stop it."""
    from netcortex.app import Engine
    from netcortex.bridge.record import EventRecorder

    with tempfile.TemporaryDirectory(prefix="netcortex-demo-") as tmpdir:
        config = _embedded_config(Path(tmpdir))
        engine = Engine(config)
        await engine.start()
        recorder: EventRecorder | None = None
        try:
            if record is not None:
                # This run's events only: an older file's would be replayed on the
                # same virtual clock, as if one engine had seen both runs.
                recorder = EventRecorder(engine.bus, record, append=False)
                await recorder.start()
            trap_host, trap_port = engine.bound_addresses["trap"]
            _, http_port = engine.bound_addresses["http"]
            base = target_from_config(config, http_port=http_port)
            target = Target(
                base_url=base.base_url,
                api_token=base.api_token,
                trap_host=trap_host,
                trap_port=trap_port,
                community=base.community,
                meraki_secret=base.meraki_secret,
                flap_high=base.flap_high,
                source="embedded engine (demo network)",
            )
            print(
                f"started an embedded engine: traps on udp {trap_host}:{trap_port}, "
                f"HTTP on {target.base_url}, demo network inventory, store in {tmpdir}",
                file=progress,
                flush=True,
            )
            report = await play(target, mode="embedded", timeout=timeout, progress=progress)
        finally:
            if recorder is not None:
                await recorder.stop()
            await engine.stop()
        if recorder is not None:
            report.recorded = str(record)
            report.recorded_events = recorder.written
        print("stopped the embedded engine", file=progress, flush=True)
        return report


async def run_demo(
    config: Config,
    *,
    embedded: bool,
    record: Path | None,
    timeout: float,
    progress: TextIO,
) -> Report:
    """Play against the config's engine when it answers (else, or with ``embedded``,
    an embedded one).

    Raises:
        DemoError: ``record`` with a running engine, or the engine cannot be used.
    """
    if not embedded:
        base_url: str | None = None
        try:
            target = target_from_config(config)
            base_url = target.base_url
        except DemoError as exc:
            print(f"{exc}; using an embedded engine", file=progress, flush=True)
        if base_url is not None:
            if await engine_answers(base_url):
                if record is not None:
                    raise DemoError(
                        f"--record: the engine at {base_url} is already running; record its "
                        "events by starting it with `netcortex run --record FILE` (that file "
                        "then holds the demo's events), or use `netcortex demo --embedded "
                        "--record FILE`",
                        EXIT_USAGE,
                    )
                print(
                    f"engine at {base_url} answers ({config.source}): sending traps to udp "
                    f"{target.trap_host}:{target.trap_port} and webhooks to "
                    f"{base_url}/webhooks/meraki",
                    file=progress,
                    flush=True,
                )
                return await play(target, mode="remote", timeout=timeout, progress=progress)
            print(
                f"no engine answers at {base_url}/healthz ({config.source}); "
                "starting an embedded one",
                file=progress,
                flush=True,
            )
    return await play_embedded(timeout=timeout, progress=progress, record=record)


# ----------------------------------------------------------------------- output


def _short(oid: str) -> str:
    return oid[:_SHORT_ID]


def render_report(report: Report) -> str:
    """The report as aligned text: the summary line, then each incident in full."""
    from netcortex.bridge.cli import align

    lines = [
        f"{_plural(report.events, 'event')} → {_plural(len(report.outcomes), 'outcome')} → "
        f"{_plural(len(report.incidents), 'incident')}",
    ]
    for inc in report.incidents:
        state = inc["state"] + (" (flapping)" if inc.get("flapping") else "")
        lines += [
            "",
            f"incident {_short(inc['id'])}  {inc['rule']}  {state}  {inc['severity']}",
        ]
        why = (inc.get("details") or {}).get("why")
        head = [("  root", inc["root"]), ("  summary", " ".join(inc["summary"].split()))]
        if why:
            head.append(("  why", str(why)))
        if inc.get("details", {}).get("merged_into"):
            head.append(("  merged into", _short(str(inc["details"]["merged_into"]))))
        for n, member in enumerate(inc["members"]):
            head.append(("  members" if n == 0 else "", member))
        lines.append(align(head))
        inhibited = set(inc.get("inhibited") or ())
        rows: list[tuple[str, ...]] = [("  evidence", "HANDLER", "KIND", "TARGET", "")]
        for oid in inc["evidence"]:
            o = report.evidence.get(oid)
            mark = "inhibited" if oid in inhibited else ""
            if o is None:
                rows.append((f"    {_short(oid)}", "?", "?", "?", mark))
            else:
                rows.append((f"    {_short(oid)}", o["handler_id"], o["kind"], o["target"], mark))
        lines.append(align(rows))
    if report.recorded is not None:
        lines += [
            "",
            f"recorded {_plural(report.recorded_events or 0, 'event')} to {report.recorded}",
        ]
    if report.missing:
        lines += ["", "MISSING:"] + [f"  {m}" for m in report.missing]
    return "\n".join(lines)


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON (``--json``)."""
    return {
        "ok": report.ok,
        "mode": report.mode,
        "engine": {
            "http": report.base_url,
            "traps": report.trap_address,
            "config": report.source,
        },
        "started_at": report.started_at.isoformat(),
        "events": report.events,
        "outcome_count": len(report.outcomes),
        "incident_count": len(report.incidents),
        "acts": [
            {
                "title": a.title,
                "story": a.story,
                "traps": a.traps,
                "webhooks": a.webhooks,
                "outcomes": [o["outcome_id"] for o in a.outcomes],
                "incidents": a.incidents,
                "missing": a.missing,
            }
            for a in report.acts
        ],
        "outcomes": report.outcomes,
        "incidents": [
            {
                **inc,
                "evidence_outcomes": [
                    {
                        "outcome_id": oid,
                        "handler_id": report.evidence.get(oid, {}).get("handler_id"),
                        "kind": report.evidence.get(oid, {}).get("kind"),
                        "target": report.evidence.get(oid, {}).get("target"),
                        "inhibited": oid in set(inc.get("inhibited") or ()),
                    }
                    for oid in inc["evidence"]
                ],
            }
            for inc in report.incidents
        ],
        "missing": report.missing,
        "recorded": report.recorded,
        "recorded_events": report.recorded_events,
    }


def dump_json(report: Report, out: TextIO) -> None:
    """Write ``report_dict`` as indented JSON to ``out``."""
    json.dump(report_dict(report), out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")


def default_progress() -> TextIO:
    """Where progress lines go: stderr (stdout carries the report)."""
    return sys.stderr
