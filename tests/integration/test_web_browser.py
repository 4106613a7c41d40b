"""End to end in real headless Chromium: the UI served by `ringfence web` (waitress).

Sets the password, blocks a number from the call log and checks `ringfence screen` agrees,
plays a voicemail, and saves screenshots at phone and desktop widths under test-artifacts/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.store.models import utcnow
from tests.conftest import REPO_ROOT
from tests.helpers import Services
from tests.peers.require import missing_peer
from tests.web.support import log_call, save_voicemail

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PASSWORD = "a garden of forking paths"
BLOCKED = "+33612345678"
HOSTILE = "<img src=x onerror=alert(1)>"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `ringfence web` and its config."""

    url: str
    config: Path
    process: subprocess.Popen[bytes]


def ringfence(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `ringfence` command as a subprocess, the way the owner would."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False)


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    """Poll until the server answers (or fail if it exits)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ringfence web exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/login", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise AssertionError("ringfence web did not start within 30 s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not os.path.exists(CHROMIUM):
        missing_peer(f"{CHROMIUM} is not installed (apt-get install chromium)")
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "data"\nlanguage = "en"\n[web]\nlisten = "127.0.0.1:{port}"\n',
                      encoding="utf-8")
    upgraded = ringfence(config, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    settings = load_settings(config)
    service = Services.open(settings)
    now = utcnow()
    log_call(service, BLOCKED, name="Télé Vente", at=now - timedelta(minutes=3),
             reason="unknown caller: let through")
    log_call(service, "+33162000000", action="reject:603", at=now - timedelta(minutes=30),
             reason="telemarketing range +33162 (ARCEP)")
    log_call(service, "+442079460000", action="voicemail", name=HOSTILE,
             at=now - timedelta(hours=5), reason="foreign number: leave a message")
    for hours in range(2, 140, 7):
        log_call(service, f"+33698000{hours:03d}", action="pass" if hours % 3 else "voicemail",
                 at=now - timedelta(hours=hours))
    service.book.set_line_state("home", "registered", None)
    save_voicemail(service, settings, "+33698765432", name="Alice", seconds=2.0, at=now)
    service.db.dispose()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "web"], cwd=REPO_ROOT,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield Server(url, config, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser() -> Iterator[object]:
    if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
        import playwright.sync_api as playwright_api  # CI: a missing package must fail
    else:
        playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


def shoot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore


def test_owner_sets_password_blocks_a_caller_and_plays_voicemail(server: Server,
                                                                  browser: object) -> None:
    context = browser.new_context(viewport=PHONE)  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A CSP violation (an inline script or style slipping in) shows up as a console error.
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # First run: every page leads to the setup form.
    page.goto(server.url + "/calls")
    assert page.url.endswith("/setup")
    shoot(page, "phone-setup")
    page.fill("#f-password", PASSWORD)
    page.fill("#f-confirm", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(server.url + "/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("svg.chart").count() == 2
    shoot(page, "phone-dashboard")

    # Log out and back in.
    page.click("text=Log out")
    page.wait_for_url("**/login")
    page.fill("#f-password", "not the password")
    page.click("button.primary")
    assert "Wrong password" in page.locator(".error").inner_text()
    errors.clear()  # the browser logs the 401 answer itself as a console error
    page.fill("#f-password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(server.url + "/")

    # The call log shows the hostile name as text, never as an element.
    page.goto(server.url + "/calls")
    assert page.locator("#call-log img").count() == 0
    assert HOSTILE in page.locator("#call-log").inner_text()
    assert not errors and not dialogs
    shoot(page, "phone-calls")

    # Block the telemarketer from its row, through the confirmation page.
    row = page.locator("#call-log li", has_text="06 12 34 56 78").first
    row.locator("text=Block").click()
    page.wait_for_url("**/lists/confirm**")
    assert (f"{BLOCKED} will be added to the block list; calls from it will get reject:603"
            in page.locator(".effect").inner_text())
    shoot(page, "phone-confirm")
    page.click("#confirm-button")
    page.wait_for_url("**/calls**")
    screened = ringfence(server.config, "screen", "06 12 34 56 78")
    assert screened.returncode == 0, screened.stderr
    answer = json.loads(screened.stdout)
    assert answer["action"] == "reject:603" and answer["step"] == "block"

    # The UI's "test a number" says the same as the command.
    page.goto(server.url + "/test")
    page.fill("#f-number", "06 12 34 56 78")
    page.click("#test-form button")
    assert page.locator("[data-action]").get_attribute("data-action") == answer["action"]
    assert answer["reason"] in page.locator("#test-result").inner_text()
    shoot(page, "phone-test")

    # Play a voicemail: the <audio> element loads the WAV through the authenticated route.
    page.goto(server.url + "/voicemail")
    audio = page.locator("#voicemails audio").first
    audio.evaluate("el => { el.preload = 'auto'; el.load(); }")
    page.wait_for_function(
        "() => { const a = document.querySelector('#voicemails audio');"
        " return a && a.readyState >= 1 && a.duration > 0; }")
    duration = audio.evaluate("el => el.duration")
    assert duration == pytest.approx(2.0, abs=0.1)
    audio.evaluate("el => el.play()")
    page.wait_for_function("() => document.querySelector('#voicemails audio').currentTime > 0")
    shoot(page, "phone-voicemail")

    page.goto(server.url + "/rules")
    shoot(page, "phone-rules")
    page.goto(server.url + "/lists/block")
    assert "06 12 34 56 78" in page.locator("#entries").inner_text()
    shoot(page, "phone-block-list")

    # Nothing is wider than the phone's screen.
    for path in ("/", "/calls", "/rules", "/voicemail", "/lists/block", "/transfer"):
        page.goto(server.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    assert not errors

    # The same session at desktop width.
    cookies = context.cookies()
    desktop = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    desktop.add_cookies(cookies)
    wide = desktop.new_page()
    for path, name in (("/", "dashboard"), ("/calls", "calls"), ("/rules", "rules"),
                       ("/voicemail", "voicemail")):
        wide.goto(server.url + path)
        shoot(wide, f"desktop-{name}")
    wide.goto(server.url + "/")
    wide.click("text=Français")
    assert wide.locator("h1").inner_text() == "Tableau de bord"
    shoot(wide, "desktop-dashboard-fr")
    desktop.close()
    context.close()


def test_forged_cross_site_post_is_refused(server: Server, browser: object) -> None:
    ringfence(server.config, "set-password", "--password-file", str(_pw(server.config)))
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(server.url + "/login")
    page.fill("#f-password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(server.url + "/")
    # A form without the token, as another site would send it.
    response = page.request.post(server.url + "/pause", form={"amount": "5", "unit": "hours"})
    assert response.status == 400 and "CSRF" in response.text()
    context.close()


def _pw(config: Path) -> Path:
    path = config.parent / "password.txt"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    return path
