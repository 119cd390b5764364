"""The dashboard in a real headless Chromium (Selenium) against a real werkzeug server on loopback."""

from __future__ import annotations

import os
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
from runnerguard.queue import tasks as rq_tasks
from runnerguard.store import rollback_state
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


SHOTS = os.environ.get("RUNNERGUARD_SCREENSHOTS", "")  # a folder to keep the screenshots in (else the test's tmp)
LAYOUT = """
const vw = document.documentElement.clientWidth;
const out = {vw: vw, page: document.documentElement.scrollWidth, body: document.body.scrollWidth, replay: [],
             status: [], firstSection: document.querySelector('#scorecard').getBoundingClientRect().top,
             wraps: []};
for (const b of document.querySelectorAll('button.replay')) {
  const r = b.getBoundingClientRect();
  const wrap = b.closest('.table-wrap');
  const scrolls = wrap && getComputedStyle(wrap).overflowX === 'auto' && wrap.scrollWidth > wrap.clientWidth;
  out.replay.push({left: r.left, right: r.right, width: r.width, inside: r.left >= 0 && r.right <= vw,
                   scrollable: !!scrolls});
}
for (const s of document.querySelectorAll('#status .status[data-pool]')) {
  const r = s.getBoundingClientRect();
  out.status.push({pool: s.dataset.pool, state: s.dataset.state, top: r.top, height: r.height, right: r.right,
                   text: s.innerText});
}
for (const w of document.querySelectorAll('.table-wrap')) {
  out.wraps.push({id: w.closest('section').id, scroll: w.scrollWidth, client: w.clientWidth});
}
return out;
"""


def full_page_shot(browser, width: int, path: Path) -> dict:  # type: ignore[no-untyped-def,type-arg]
    browser.set_window_size(width, 900)
    facts = browser.execute_script(LAYOUT)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(width, min(height + 160, 16000))  # the whole page in one picture
    browser.save_screenshot(str(path))
    browser.set_window_size(width, 900)
    return facts  # type: ignore[no-any-return]


def test_screenshots_at_1366_and_390_px_read_well(live_url: str, browser, redis_client, drain, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # a blocked pool with a long reason, a failed open_rollback task and long repository names: the hard cases
    rollback_state.save(redis_client, rollback_state.RollbackState(
        pool="self-hosted", repo="octo-organisation-with-a-long-name/a-repository-with-a-rather-long-name",
        state="blocked", reason="the GitHub App is not configured (open /setup): no installation token can be "
        "made for octo-organisation-with-a-long-name/a-repository-with-a-rather-long-name"), event="blocked")
    rq_tasks.enqueue(rq_tasks.OPEN_ROLLBACK, "retired-pool", "octo/app", connection=redis_client,
                     job_id="rollback_retired-pool")
    rq_tasks.queue("events", redis_client).enqueue("json.loads", "b-0-2", job_id="b-0-2_timings")
    drain()
    browser.get(live_url + "/login")
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login-button").click()
    wait_for(browser, "#status .status")
    folder = Path(SHOTS) if SHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1366, 390):
        shot = folder / f"dashboard-{width}.png"
        facts = full_page_shot(browser, width, shot)
        assert shot.stat().st_size > 20_000, shot  # a picture of a page, not a blank
        assert facts["page"] <= facts["vw"] and facts["body"] <= facts["vw"], facts  # no sideways scrolling
        assert facts["replay"], "no Replay button on the page"
        for button in facts["replay"]:
            assert button["width"] > 0 and (button["inside"] or button["scrollable"]), (width, button)
        assert [s["pool"] for s in facts["status"]] == ["self-hosted"], facts["status"]
        line = facts["status"][0]
        assert line["state"] == "blocked" and "self-hosted: blocked" in line["text"]
        assert "the GitHub App is not configured" in line["text"] and "set up the App" in line["text"]
        assert line["top"] < facts["firstSection"] and line["right"] <= facts["vw"], line  # on top, not cut off
        if width == 1366:  # a desktop: every table fits its section, nothing scrolls inside
            assert all(w["scroll"] <= w["client"] for w in facts["wraps"]), facts["wraps"]
            assert all(b["inside"] for b in facts["replay"])


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
