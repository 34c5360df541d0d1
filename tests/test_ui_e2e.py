"""`slapfed ui` in a real headless Chromium: a real master over mutual TLS, a real node
running the hello release, the dashboard run as its user; the page shows the picture and
the instance, follows `slapfed stop` live (no reload), and its buttons act as the user.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package with
``executable_path`` (no browser download). The screenshots are kept in the test's
directory and, when $SLAPFED_ARTIFACTS is set, copied there."""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import mtls_master_and_node, slapfed_cli

from slapfed.procs import Proc, slapfed_argv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
COMPUTER = "ui-node"
CHROMIUM = next((p for p in (os.environ.get("SLAPFED_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
# what the browser may take to see a change the master already has: the dashboard's
# poll (0.3 s here) and a margin for a loaded machine
SEEN_WITHIN_MS = 20_000


def _browser_or_skip():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install "
                    "'.[test]')")
    return sync_playwright


def start_ui(base: Path, env: dict, name: str) -> tuple[Proc, str]:
    url_file = base / f"{name}.url"
    proc = Proc(slapfed_argv("ui", "--interval", "0.3", "--url-file", str(url_file)),
                base / f"{name}.log", env=env)
    wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
             f"the {name} dashboard's URL", proc=proc)
    return proc, url_file.read_text().strip()


def keep(path: Path) -> None:
    out = os.environ.get("SLAPFED_ARTIFACTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)


def row(reference: str, state: str | None = None) -> str:
    sel = f'tbody.instance[data-reference="{reference}"]'
    return sel + (f'[data-state="{state}"]' if state else "")


def test_the_dashboard_shows_the_federation_and_follows_changes_live(tmp_path_factory):
    sync_playwright = _browser_or_skip()
    base = tmp_path_factory.mktemp("ui")
    procs = []
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=236) as fed:
        try:
            slapfed_cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])
            inst = json.loads(slapfed_cli("request", "hello-ui", HELLO, "--wait", "120",
                                          "--json", env=fed["env"]).stdout)
            assert inst["status"]["state"] == "started"
            ui, url = start_ui(base, fed["env"], "alice-ui")
            procs.append(ui)
            assert url.startswith("http://127.0.0.1:") and "?token=" in url

            # the token is checked on every request
            bare = url.split("?")[0]
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bare, timeout=10)
            assert refused.value.code == 403

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM)
                try:
                    page = browser.new_page(viewport={"width": 1360, "height": 900})
                    page.goto(url)
                    page.wait_for_selector(row("hello-ui", "started"))
                    # the picture: this master, the computer and partition, the instance
                    svg = page.inner_html("#picture .svg-wrap")
                    assert "<svg" in svg and "hello-ui" in svg and COMPUTER in svg
                    # the instance row: where it runs, its connection URL as a link
                    text = page.inner_text(row("hello-ui"))
                    place = inst["placement"]
                    assert f"{place['computer']}/{place['partition']}" in text
                    link = page.get_attribute(f'{row("hello-ui")} .conn a', "href")
                    assert link == inst["connection"]["url"]
                    assert "person/alice" in page.inner_text("#status")
                    # a person may not read the peers: said so, not hidden
                    assert "Not shown: person/alice may not list peers" in page.inner_text("#peers")
                    page.evaluate("window.__same_page = true")

                    # the CLI stops it: the page follows, without a reload
                    slapfed_cli("stop", "hello-ui", env=fed["env"])
                    t0 = time.monotonic()
                    page.wait_for_selector(row("hello-ui", "stopped"),
                                           timeout=SEEN_WITHIN_MS * 3)
                    print(f"\nslapfed stop -> 'stopped' on the page in "
                          f"{time.monotonic() - t0:.2f} s (the node stops the service and "
                          "reports; the dashboard polls every 0.3 s)")
                    assert page.evaluate("window.__same_page") is True
                    assert fed["client"].find("hello-ui")["status"]["state"] == "stopped"
                    shot = base / "dashboard-alice.png"
                    page.screenshot(path=str(shot), full_page=True)
                    keep(shot)

                    # its start button asks the master, as alice, and the page follows
                    page.click(f'{row("hello-ui")} button[data-action="start"]')
                    page.wait_for_selector(row("hello-ui", "started"),
                                           timeout=SEEN_WITHIN_MS * 3)
                    assert fed["client"].find("hello-ui")["requested_state"] == "started"
                    assert page.evaluate("window.__same_page") is True

                    # an admin's dashboard: the whole topology, computers with their lease
                    admin_ui, admin_url = start_ui(base, fed["admin_env"], "admin-ui")
                    procs.append(admin_ui)
                    admin = browser.new_page(viewport={"width": 1360, "height": 900})
                    admin.goto(admin_url)
                    admin.wait_for_selector(f'tr[data-computer="{COMPUTER}"]')
                    computers = admin.inner_text("#computers")
                    assert "up" in computers and "1 used" in computers
                    assert "no peers" in admin.inner_text("#peers")
                    assert "whole topology" in admin.inner_text("#picture")
                    # alice's instance is shown to the admin, without buttons the master
                    # would refuse
                    assert "of person/alice" in admin.inner_text(row("hello-ui"))
                    assert admin.locator(f'{row("hello-ui")} button').count() == 0
                    # opened details stay open while the page follows changes
                    admin.click(f'{row("hello-ui")} details summary')
                    def updates():
                        return int(admin.evaluate("document.body.dataset.updates || '0'"))
                    seen = updates()
                    # (the page's CSP forbids eval, so no wait_for_function: poll here)
                    wait_for(lambda: updates() > seen, 20, "the page to follow an update")
                    assert admin.locator(f'{row("hello-ui")} details[open]').count() == 1
                    shot = base / "dashboard-admin.png"
                    admin.screenshot(path=str(shot), full_page=True)
                    keep(shot)
                except Exception:
                    for n, pg in enumerate(p for c in browser.contexts for p in c.pages):
                        pg.screenshot(path=str(base / f"failed-{n}.png"), full_page=True)
                        (base / f"failed-{n}.html").write_text(pg.content())
                    raise
                finally:
                    browser.close()
        except Exception:
            for p in procs:
                print(f"--- {p.log.name}\n{p.log_tail()}")
            raise
        finally:
            for p in reversed(procs):
                p.stop()
