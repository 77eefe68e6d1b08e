"""End to end: real ``snmptrap`` datagrams into the real ``netcortex run`` process.

Each scenario runs once on the memory bus and once on NATS JetStream (the
``traps_engine`` fixture). The device of a v2c/v3 trap is its UDP source, so every
scenario sends from its own loopback address (``--clientaddr=127.0.0.N``) and
asserts on exactly the targets it caused; the v1 device is the agent-addr field
and a relayed trap's is ``snmpTrapAddress.0``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from netcortex.contracts.reflex import ReflexOutcome
from tests.e2e.harness import (
    EngineProcess,
    catalog_command,
    send_datagrams,
    send_traps,
    snmptrap_argv,
)

pytestmark = [pytest.mark.e2e, pytest.mark.snmp]

Expectation = tuple[str, str, str, str]  # handler_id, kind, severity, target


def key(outcome: ReflexOutcome) -> Expectation:
    """The fields a scenario asserts on."""
    return (outcome.handler_id, outcome.kind.value, outcome.severity.value, outcome.target)


def good_link_down(catalog: dict[str, Any], port: int, source: str, ifname: str) -> list[str]:
    """A v2c linkDown with community ``public`` from ``source`` for interface ``ifname``."""
    return snmptrap_argv(
        catalog_command(catalog, "linkDown", "v2c"),
        port,
        clientaddr=source,
        replace={"Gi1/0/3": ifname},
    )


def test_link_down_and_bgp_drop_over_v1_v2c_v3(
    traps_engine: EngineProcess, snmp_catalog: dict[str, Any]
) -> None:
    """linkDown over v1, v2c and v3 authPriv and BGP backward transitions become stored
    high outcomes with the right handler and target, and an outcome_recorded line each."""
    port = traps_engine.trap_port
    cat = snmp_catalog
    sends: dict[Expectation, list[str]] = {
        ("link_down", "logged", "high", "192.0.2.11|Gi1/0/3"): snmptrap_argv(
            catalog_command(cat, "linkDown", "v1"), port
        ),
        ("link_down", "logged", "high", "127.0.0.21|Gi1/0/3"): snmptrap_argv(
            catalog_command(cat, "linkDown", "v2c"), port, clientaddr="127.0.0.21"
        ),
        ("link_down", "logged", "high", "127.0.0.22|Gi1/0/3"): snmptrap_argv(
            catalog_command(cat, "linkDown", "v3"), port, clientaddr="127.0.0.22"
        ),
        # Relayed: the origin is snmpTrapAddress.0, not the relay's UDP source.
        ("link_down", "logged", "high", "192.0.2.11|Gi1/0/9"): snmptrap_argv(
            catalog_command(cat, "linkDown relayed with snmpTrapAddress.0", "v3"),
            port,
            clientaddr="127.0.0.23",
            replace={"Gi1/0/3": "Gi1/0/9"},
        ),
        ("bgp_drop", "logged", "high", "192.0.2.1|203.0.113.1"): snmptrap_argv(
            catalog_command(cat, "bgpBackwardTransition (RFC 1657)", "v1"), port
        ),
        ("bgp_drop", "logged", "high", "127.0.0.24|203.0.113.1"): snmptrap_argv(
            catalog_command(cat, "bgpBackwardTransNotification (RFC 4273)", "v2c"),
            port,
            clientaddr="127.0.0.24",
        ),
        ("bgp_drop", "logged", "high", "127.0.0.25|203.0.113.9"): snmptrap_argv(
            catalog_command(cat, "cbgpPeer2BackwardTransition", "v3"),
            port,
            clientaddr="127.0.0.25",
        ),
    }
    send_traps(sends.values())

    expected = set(sends)
    targets = {target for *_, target in expected}
    found = traps_engine.wait_for_outcomes(lambda o: o.target in targets, len(expected))
    assert sorted(key(o) for o in found) == sorted(expected)

    for handler_id, _, severity, target in expected:
        traps_engine.wait_for_log(
            "outcome_recorded", handler_id=handler_id, severity=severity, target=target
        )

    # The operator's view: `netcortex outcomes --json` shows the same records.
    result = traps_engine.cli(
        "outcomes", "--config", str(traps_engine.config_path), "--json", "--severity", "high"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    shown = {(r["handler_id"], r["kind"], r["severity"], r["target"]) for r in rows}
    assert expected <= shown


@pytest.mark.parametrize(
    ("case", "bad_source", "reason"),
    [
        ("wrong_community", "127.0.0.31", "bad_community"),
        ("wrong_v3_auth_key", "127.0.0.33", "auth_failed"),
    ],
)
def test_rejected_trap_makes_no_outcome(
    traps_engine: EngineProcess,
    snmp_catalog: dict[str, Any],
    case: str,
    bad_source: str,
    reason: str,
) -> None:
    """A trap with a wrong community or wrong v3 auth key yields no outcome and one
    trap_rejected line with its reason; a good trap sent after it is handled."""
    port = traps_engine.trap_port
    if case == "wrong_community":
        bad = snmptrap_argv(
            catalog_command(snmp_catalog, "linkDown", "v2c"),
            port,
            clientaddr=bad_source,
            replace={"public": "wrongcommunity"},
        )
    else:
        bad = snmptrap_argv(
            catalog_command(snmp_catalog, "linkDown", "v3"),
            port,
            clientaddr=bad_source,
            replace={"netcortex-auth-01": "wrong-auth-key-01"},
        )
    good_source = bad_source[:-1] + str(int(bad_source[-1]) + 1)
    send_traps([bad])
    send_traps([good_link_down(snmp_catalog, port, good_source, "Gi1/0/3")])

    # The good trap was sent after the bad one on the same socket path: once its
    # outcome is stored, the bad one has long been decided.
    (good,) = traps_engine.wait_for_outcomes(lambda o: o.device == good_source)
    assert key(good) == ("link_down", "logged", "high", f"{good_source}|Gi1/0/3")
    assert [o for o in traps_engine.outcomes() if o.device == bad_source] == []
    line = traps_engine.wait_for_log("trap_rejected", agent=bad_source)
    assert line["reason"] == reason
    assert line["level"] == "warning"
    text = json.dumps(traps_engine.lines)
    assert "wrongcommunity" not in text
    assert "wrong-auth-key-01" not in text
    assert "netcortex-auth-01" not in text


def test_garbage_udp_is_survived(traps_engine: EngineProcess, snmp_catalog: dict[str, Any]) -> None:
    """Garbage, truncated BER and an empty datagram are rejected as malformed, and the
    engine keeps handling good traps."""
    port = traps_engine.trap_port
    garbage = [
        b"",
        b"hello, not snmp",
        bytes.fromhex("3082ffff020101"),  # SEQUENCE claiming 65535 bytes
        bytes(range(256)),
        b"\x30\x03\x02\x01",
    ]
    send_datagrams(port, garbage, source="127.0.0.41")
    send_traps([good_link_down(snmp_catalog, port, "127.0.0.42", "Gi1/0/3")])

    (good,) = traps_engine.wait_for_outcomes(lambda o: o.device == "127.0.0.42")
    assert key(good) == ("link_down", "logged", "high", "127.0.0.42|Gi1/0/3")
    assert traps_engine.alive
    line = traps_engine.wait_for_log("trap_rejected", agent="127.0.0.41")
    assert line["reason"] == "malformed"
