"""Bridge: ``netcortex demo`` — a built-in scenario played through the real pipeline.

``scenario`` holds the story (a core switch reboot, a cable cut, a BGP flap, a
Meraki IDS alert) and the SNMPv1 trap encoder; ``runner`` plays it against the
engine the config describes — or an embedded one — and reports the events,
outcomes and incidents; ``network.yaml`` (package data) is the demo network the
embedded engine's inventory is made of. This module registers the subcommand.
May import everything (bridge).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CONFIG", "add_demo_parser", "cmd_demo"]

#: ``--config`` when none is given (the `make run` engine's), if it exists.
DEFAULT_CONFIG = "examples/netcortex.yaml"


def cmd_demo(args: argparse.Namespace) -> int:
    """``netcortex demo``: play the scenario, print the report, 0 when all appeared."""
    from netcortex.bridge import cli
    from netcortex.bridge.demo.runner import (
        EXIT_FAILURE,
        EXIT_OK,
        EXIT_USAGE,
        DemoError,
        dump_json,
        render_report,
        run_demo,
    )
    from netcortex.errors import NetcortexError

    cli._quiet_logging()
    name = "netcortex demo"
    if not (math.isfinite(args.timeout) and args.timeout > 0):  # nan/inf: never a deadline
        print(f"{name}: --timeout must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    config = cli._load(path, sys.stderr)
    if config is None:
        return EXIT_USAGE
    progress = sys.stderr if args.json else sys.stdout
    record = Path(args.record) if args.record else None
    try:
        report = cli._run_async(
            run_demo(
                config,
                embedded=args.embedded,
                record=record,
                timeout=args.timeout,
                progress=progress,
            )
        )
    except DemoError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.status
    except (NetcortexError, OSError) as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        dump_json(report, sys.stdout)
    else:
        print()
        print(render_report(report))
    if not report.ok:
        print(
            f"{name}: {len(report.missing)} expected result(s) missing (see above); does the "
            "engine's inventory hold the demo network (examples/inventory.yaml)?",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def add_demo_parser(sub: Any) -> None:
    """Register ``netcortex demo`` on the ``netcortex`` subparsers."""
    demo = sub.add_parser(
        "demo",
        help="replay a built-in scenario through the real pipeline and show the incidents",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Play a built-in scenario on the fixture network through the real pipeline\n"
            "and print what the engine made of it.\n\n"
            "What it sends: real SNMPv1 traps over UDP (agent-addr = the device's address)\n"
            "and a real Meraki webhook POST, in four acts:\n"
            "  1. core switch reboot: coldStart from sw1-north + link-downs of its ports\n"
            "     and their cable peers           → one device_root incident (links inhibited)\n"
            "  2. cable cut: both ends of the WAN cable r1-north ⇄ r1-south down, the iBGP\n"
            "     session over it drops, then all recover → cable_pair (BGP joins), resolved\n"
            "  3. BGP flap: r1-north's transit session goes down and up (at least\n"
            "     association.flap_high + 2 state changes)  → one flapping incident\n"
            "  4. Meraki IDS alert on mx-west (fresh alertId) → one security_webhook outcome\n\n"
            "Where: to the engine --config describes (default examples/netcortex.yaml) when\n"
            "its /healthz answers — trap.host/port, http.host/port + http.api_token,\n"
            "meraki.shared_secret; that engine's inventory must hold the demo network, as\n"
            "examples/inventory.yaml does. When nothing answers (or with --embedded) it\n"
            "starts an engine in-process on free ports in a temporary directory with the\n"
            "demo network, and stops it afterwards. Results are read back over the HTTP\n"
            "API (outcomes and incidents changed since the demo started, per demo device),\n"
            "waiting for each step with a deadline (--timeout).\n\n"
            "What it prints: one progress line per act, then\n"
            "'N events → M outcomes → K incidents' and each incident with its rule, root,\n"
            "state, members and evidence (outcome id, handler, kind, target; inhibited\n"
            "ones marked); --json prints one JSON object instead (progress on stderr).\n\n"
            "Exit codes: 0 every expected outcome and incident appeared, 1 something is\n"
            "missing (listed) or the engine failed, 2 usage or configuration error."
        ),
    )
    demo.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=f"config of the engine to send to (default: {DEFAULT_CONFIG} when it exists, "
        "else built-in defaults)",
    )
    demo.add_argument(
        "--embedded",
        action="store_true",
        help="always start an in-process engine on the demo network, even if one answers",
    )
    demo.add_argument(
        "--record",
        metavar="FILE",
        help="write every event the engine received during the demo to FILE as JSON lines "
        "(for `netcortex replay FILE`); embedded engine only — a running engine records "
        "only when it was started with `netcortex run --record FILE`, so with one "
        "answering this is an error",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="longest wait for one step's outcomes or incidents (default 20)",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.set_defaults(func=cmd_demo)
