"""Log chain cost: CPU µs per ``outcome_recorded`` line through the configured chain.

The engine writes one INFO ``outcome_recorded`` line per outcome (``reflex.sinks.
LogSink``), so the structlog chain set up by ``netcortex.logs.configure_logging``
(context merge, level, timestamp, ``redact_secrets``, JSON renderer) is on the
hot path. This writes ``--count`` such lines (the fields ``LogSink`` writes,
with the handler's bound context) to ``/dev/null`` and prints the process CPU
time per line.

    .venv/bin/python benchmarks/bench_logs.py [--count 50000] [--format json|console]
"""

from __future__ import annotations

import argparse
import os
import time

import structlog

from netcortex.config import LogConfig
from netcortex.logs import configure_logging


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50_000, help="lines to write")
    ap.add_argument("--format", choices=["json", "console"], default="json")
    args = ap.parse_args()
    with open(os.devnull, "w", encoding="utf-8") as out:
        configure_logging(LogConfig(level="info", format=args.format), stream=out)
        structlog.contextvars.bind_contextvars(
            handler_id="link_down", subject="sensory.snmp.trap.link_down.127%2E0%2E1%2E1.Gi1/0/5"
        )
        log = structlog.get_logger("netcortex.reflex.sinks")
        started = time.process_time()
        for _ in range(args.count):
            log.info(
                "outcome_recorded",
                severity="high",
                handler_id="link_down",
                kind="logged",
                target="127.0.1.1|Gi1/0/5",
                summary="Link down on 127.0.1.1 Gi1/0/5",
                outcome_id="01JDXYZABCDEF0123456789ABC/link_down",
                event_id="01JDXYZABCDEF0123456789ABC",
            )
        cpu = time.process_time() - started
        structlog.contextvars.clear_contextvars()
    print(
        f"log chain ({args.format}): {cpu / args.count * 1e6:.1f} µs CPU per "
        f"outcome_recorded line ({args.count} lines)"
    )


if __name__ == "__main__":
    main()
