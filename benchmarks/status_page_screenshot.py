"""Take the README's screenshot of the status page (``docs/img/status-page.png``).

Starts the real engine (the e2e harness, the shared fixture inventory), gives it
a few real traps (both ends of the fixture cable down → a ``cable_pair``
incident; a cold start; a BGP session down on r1-north, a link on sw1-south)
and two Meraki alerts, schedules a maintenance window for tomorrow night, opens
the page in Debian's Chromium (Playwright, system executable, no downloads) at
1280x800 with the token in the fragment, expands the incident and saves a
PNG of the viewport (kept under 300 KB).

    .venv/bin/python benchmarks/status_page_screenshot.py [--out docs/img/status-page.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import expect, sync_playwright
from tests.conftest import load_json_fixture, shared_fixture
from tests.e2e.harness import (
    EngineProcess,
    catalog_command,
    meraki_alert,
    send_traps,
    snmptrap_argv,
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_BYTES = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=Path, default=root / "docs" / "img" / "status-page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    catalog = load_json_fixture("snmp", "catalog.json")
    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    with (
        tempfile.TemporaryDirectory() as tmp,
        EngineProcess(Path(tmp), {"inventory": inventory}) as engine,
    ):
        port = engine.trap_port

        def trap(key: str, agent: str = "192.0.2.11") -> list[str]:
            return snmptrap_argv(
                catalog_command(catalog, key, "v1"), port, replace={"192.0.2.11": agent}
            )

        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT02:00:00")
        resp = engine.api(
            "POST",
            "/api/v1/maintenance",
            json={
                "id": "core-upgrade",
                "scope": "site",
                "target": "dc-south",
                "start": tomorrow,
                "duration": "2h",
                "reason": "core router upgrade",
            },
        )
        resp.raise_for_status()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{engine.base_url}/#token={engine.api_token}")
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            send_traps([trap("coldStart", "192.0.2.1")])
            send_traps([trap("bgpBackwardTransition", "192.0.2.1")])
            send_traps([trap("linkDown", "198.51.100.11")])
            for name in ("device_aps_went_down", "port_switch_port_disconnected"):
                engine.post_webhook(meraki_alert(name)).raise_for_status()
            send_traps([trap("linkDown", "192.0.2.11"), trap("linkDown", "192.0.2.12")])
            incident = page.locator("#incidents li.inc").filter(has_text="cable_pair")
            expect(incident).to_have_count(1, timeout=15_000)
            sw2 = page.locator("#outcomes li.out").filter(has_text="sw2-north")
            expect(sw2.first).to_be_visible(timeout=15_000)
            incident.locator("button.inc-row").click()
            # The status panel refreshes every 5 s: wait for the one that counts them all.
            expect(page.locator("#engine")).to_contain_text("open incidents2", timeout=15_000)
            expect(page.locator("#maint-next")).to_contain_text("core-upgrade", timeout=10_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        engine.stop_cleanly()
    size = args.out.stat().st_size
    print(f"{args.out}: {size} bytes")
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out} is {size} bytes, over {MAX_BYTES}")


if __name__ == "__main__":
    main()
