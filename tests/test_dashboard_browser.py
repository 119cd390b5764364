"""The dashboard in a real headless Chromium (Selenium) against a real werkzeug server on loopback."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from werkzeug.serving import make_server

from app import create_app
from tests.helpers import ADMIN
from tests.test_timings import deliver, job_events

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not CHROMIUM.exists() or not Path(CHROMEDRIVER).exists():
    pytest.skip(f"needs {CHROMIUM} and chromedriver (run devtools/install_browser.sh as root)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT = 15  # seconds; a loaded CI machine (the suite runs in two processes) is slow to navigate


def wait_for(browser, css: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    """Elements matching css once present: a click that submits a form returns before the next page is there."""
    return WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))  # type: ignore[no-any-return]


@pytest.fixture()
def live_url(settings, redis_client, drain) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    now = time.time()
    client = app.test_client()
    for n in range(4):
        for i, event in enumerate(job_events(700 + n, "failure" if n == 0 else "success", created=now - 7200 + n)):
            deliver(client, event, f"b-{n}-{i}")
    drain()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture()
def browser() -> Iterator[object]:

    profile = tempfile.mkdtemp(prefix="rg-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_login_see_charts_and_replay_a_delivery(live_url: str, browser) -> None:  # type: ignore[no-untyped-def]
    browser.get(live_url + "/")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "login-button").click()
    assert "not the admin token" in wait_for(browser, "#login-error")[0].text
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, "svg.chart")
    assert browser.current_url.rstrip("/") == live_url
    cookie = browser.get_cookie("runnerguard_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script can read it
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 4
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline, svg.chart circle")
    assert charts[0].size["width"] > 200  # laid out, not collapsed
    row = browser.find_element(By.CSS_SELECTOR, 'tr.delivery[data-guid="b-0-2"]')
    assert row.find_element(By.CLASS_NAME, "state").text == "done"
    row.find_element(By.CSS_SELECTOR, "button.replay").click()
    assert "Replaying delivery b-0-2" in wait_for(browser, ".flash")[0].text
    row = browser.find_element(By.CSS_SELECTOR, 'tr.delivery[data-guid="b-0-2"]')
    assert row.find_element(By.CLASS_NAME, "state").text == "queued"
    browser.set_window_size(390, 844)  # a phone: the page still lays out, the charts shrink to fit
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")[0].size["width"] <= width
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "#token")
    assert "/login" in browser.current_url


def test_a_tab_in_next_never_sends_the_browser_to_another_host(live_url: str, browser) -> None:  # type: ignore[no-untyped-def]
    # Werkzeug used to drop the TAB of "/\t/evil.example" and answer Location: //evil.example, which Chromium
    # followed to that host. Now the form post is refused (400) and the browser stays here, not logged in.
    browser.get(live_url + "/login")
    browser.execute_script("document.querySelector('input[name=next]').value = '/\\t/evil.example';")
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, "body")
    assert browser.current_url.startswith(live_url) and "evil.example" not in browser.current_url.split("?")[0]
    assert "must be a path of this site" in browser.page_source
    browser.get(live_url + "/")
    assert "/login" in browser.current_url
