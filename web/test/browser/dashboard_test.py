#!/usr/bin/env python3
"""Real-browser test of the V7 dashboard: Debian's headless Chromium driven by Selenium.

It opens the dashboard at $V7_WEB_URL, sends an event of a kind made for this run through the
page's own form (typing and clicking like a person), then waits until the stats table shows that
kind's count and the chart draws a line for it, and checks that the health badges are rendered.
It is meant for a deployed stack (web's nginx -> backend -> NATS -> analytics-engine ->
ClickHouse), so the waits are bounded but generous: the event has to travel the whole pipeline.

Run (see web/README.md, "Browser test"):
    V7_WEB_URL=http://127.0.0.1:3000 python3 web/test/browser/dashboard_test.py

Needs: apt-get install -y chromium chromium-driver; python3 -m pip install selenium (4.11+).
Environment:
    V7_WEB_URL             base URL of the dashboard (required), e.g. http://127.0.0.1:5173
    V7_BROWSER_TIMEOUT_S   how long each wait may take, default 120
    V7_EXPECT_SERVICES     comma-separated service names that must have a badge; default the six of
                           docs/contracts.md (backend,nats,analytics-engine,clickhouse,python,
                           prometheus); empty: at least one badge
    V7_EXPECT_ALL_OK       1: every badge must also say ok (default 0: rendered is enough)
    V7_BROWSER_SCREENSHOT  write a PNG of the page there at the end (always on failure if set)
    V7_CHROMIUM / V7_CHROMEDRIVER   default /usr/bin/chromium and /usr/bin/chromedriver
Exit status: 0 passed, 1 failed, 2 cannot run (no URL, no browser, no selenium). The last line
is "browser: N passed, N failed".
"""
import os
import secrets
import shutil
import sys
import tempfile
import time

DEFAULT_SERVICES = "backend,nats,analytics-engine,clickhouse,python,prometheus"


def log(msg):
    print(f"browser: {msg}", flush=True)


class Failure(Exception):
    pass


def wait_for(what, timeout, probe, interval=0.5):
    """Polls probe() until it returns something truthy; Failure with the last value on timeout.
    Polling (not a fixed sleep) keeps the test as fast as the stack and bounded when it is not."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)


# DOM reads go through one small script each: it reads the live page in one go, so no element
# handle can go stale between a refresh of the page and the next read.
JS_ROW_COUNT = """
for (const tr of document.querySelectorAll('#stats-body tr')) {
  if (tr.cells.length > 1 && tr.cells[0].textContent === arguments[0]) return tr.cells[1].textContent;
}
return null;"""

JS_CHART = """
const svg = document.getElementById('chart');
const line = svg && svg.querySelector('#chart-lines polyline[data-kind="' + arguments[0] + '"]');
const legend = document.querySelector('#chart-legend li[data-kind="' + arguments[0] + '"]');
return {
  role: svg && svg.getAttribute('role'),
  label: svg && svg.getAttribute('aria-label'),
  points: line ? line.getAttribute('points') : null,
  stroke: line ? getComputedStyle(line).stroke : null,
  legend: legend ? legend.textContent : null,
  note: (document.getElementById('chart-note') || {}).textContent,
};"""

JS_BADGES = """
const list = document.getElementById('health-badges');
return {
  health: list && list.dataset.health,
  note: (document.getElementById('health-note') || {}).textContent,
  badges: Array.from(document.querySelectorAll('#health-badges li[data-service]')).map((li) => ({
    name: li.dataset.service, state: li.dataset.state, title: li.getAttribute('title'),
    text: li.textContent,
  })),
};"""

JS_LINE = "document.querySelector('#chart-lines polyline[data-kind=\"' + arguments[0] + '\"]')"
JS_UPDATED = "return document.getElementById('last-update').textContent;"
JS_MARK = f"{JS_LINE}.v7BrowserTest = true; return document.getElementById('last-update').textContent;"
JS_MARKED = f"const l = {JS_LINE}; return !!(l && l.v7BrowserTest);"

JS_RESULT = """
const p = document.getElementById('event-result');
return {state: p.dataset.state || '', text: p.textContent};"""

JS_DIAG = """
const t = (id) => (document.getElementById(id) || {}).textContent;
return {health: t('health-note'), statsError: t('stats-error'), result: t('event-result'),
        chart: t('chart-note'), updated: t('last-update')};"""


def start_browser(chromium, chromedriver, profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    # Both paths given explicitly: Selenium then uses Debian's browser and driver and never runs
    # Selenium Manager, which would try to download a browser (no network for that here).
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # running as root in a container: Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1200",
        f"--user-data-dir={profile}",
        "--no-first-run",
        # No background connections to Google's services: there is no network for them, and
        # their failures only slow the start and flood the log.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def run(driver, base, timeout, expected, all_ok):
    from selenium.webdriver.common.by import By

    url = base.rstrip("/") + "/"
    log(f"opening {url}")
    driver.get(url)
    wait_for("the event form", timeout, lambda: driver.find_elements(By.ID, "event-form"))

    # A kind no earlier run can have used: the counts below can only come from this run's event.
    kind = f"browser_e2e_{int(time.time())}_{secrets.token_hex(4)}"
    log(f"sending one event of kind {kind} through the form")
    form = driver.find_element(By.ID, "event-form")
    for name, value in (("kind", kind), ("value", "2.5"), ("source", "browser-test")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    button = form.find_element(By.CSS_SELECTOR, "button[type=submit]")
    button.click()

    # The form answers ok (202: stored in JetStream), retry (503 or no answer: the button resends
    # the same id, so retrying cannot store the event twice) or error (400).
    deadline = time.monotonic() + timeout
    clicks = 1
    while True:
        res = wait_for("the form's answer", timeout,
                       lambda: (lambda r: r if r["state"] in ("ok", "retry", "error") else None)(
                           driver.execute_script(JS_RESULT)))
        if res["state"] == "ok":
            log(f"form: {res['text']} (after {clicks} click(s))")
            break
        if res["state"] == "error":
            raise Failure(f"the form rejected the event: {res['text']}")
        if time.monotonic() >= deadline:
            raise Failure(f"the event was not accepted in {timeout:.0f} s: {res['text']}")
        log(f"form: {res['text']}; retrying")
        time.sleep(2)
        # Wait for the answer of the new click, not the old one still on screen.
        driver.execute_script("document.getElementById('event-result').dataset.state = 'clicked'")
        button.click()
        clicks += 1

    count = wait_for(f"a table row for {kind}", timeout,
                     lambda: driver.execute_script(JS_ROW_COUNT, kind))
    log(f"table: {kind} count {count}")
    if count != "1":
        raise Failure(f"table shows count {count!r} for {kind}, expected exactly 1 (one event sent)")

    chart = wait_for(f"a chart line for {kind}", timeout,
                     lambda: (lambda c: c if c["points"] and c["legend"] else None)(
                         driver.execute_script(JS_CHART, kind)))
    n_points = len(chart["points"].split())
    log(f"chart: line for {kind} with {n_points} points, stroke {chart['stroke']}, "
        f"legend {chart['legend']!r}")
    if chart["role"] != "img":
        raise Failure(f'the chart svg has role {chart["role"]!r}, expected "img"')
    if not chart["label"] or kind not in chart["label"]:
        raise Failure(f"the chart's aria-label does not mention {kind}: {chart['label']!r}")
    if n_points < 2:
        raise Failure(f"the chart line for {kind} has {n_points} points: {chart['points']!r}")

    # "Updated in place": the same polyline element must survive a refresh (the page changes its
    # points instead of rebuilding the chart). Mark it with a JS property, wait for the next poll
    # round (the "updated at" line changes), and look for the mark.
    before = driver.execute_script(JS_MARK, kind)
    wait_for("the next refresh of the page", timeout,
             lambda: driver.execute_script(JS_UPDATED) != before)
    if not driver.execute_script(JS_MARKED, kind):
        raise Failure(f"the chart line for {kind} was rebuilt on refresh, not updated in place")
    log("chart: the line survived a refresh (updated in place)")

    def badges_ready():
        b = driver.execute_script(JS_BADGES)
        return b if b["badges"] else None

    health = wait_for("health badges", timeout, badges_ready)
    names = [b["name"] for b in health["badges"]]
    log(f"health: {health['note']!r}: " +
        ", ".join(f"{b['name']}={b['state']}" for b in health["badges"]))
    if expected:
        if health["health"] != "available":
            raise Failure(f"/api/health is unavailable in the page: {health['note']!r}")
        missing = [s for s in expected if s not in names]
        if missing:
            raise Failure(f"no health badge for {', '.join(missing)} (badges: {', '.join(names)})")
    for b in health["badges"]:
        if b["state"] not in ("ok", "bad", "unknown") or not b["text"].startswith(b["name"]):
            raise Failure(f"malformed health badge {b!r}")
        if not b["title"]:
            raise Failure(f"health badge {b['name']} has no tooltip")
    if all_ok:
        bad = [f"{b['name']} ({b['title']})" for b in health["badges"] if b["state"] != "ok"]
        if bad:
            raise Failure(f"services not ok: {'; '.join(bad)}")

    # Uncaught script errors would mean the page broke even if it looks right.
    errors = [e["message"] for e in driver.get_log("browser")
              if e.get("level") == "SEVERE" and "Uncaught" in e.get("message", "")]
    if errors:
        raise Failure("uncaught errors in the page: " + " | ".join(errors))


def main():
    base = os.environ.get("V7_WEB_URL", "").strip()
    if not base:
        print(__doc__, file=sys.stderr)
        log("V7_WEB_URL is not set")
        return 2
    timeout = float(os.environ.get("V7_BROWSER_TIMEOUT_S", "120"))
    expected = [s.strip() for s in os.environ.get("V7_EXPECT_SERVICES", DEFAULT_SERVICES).split(",")
                if s.strip()]
    all_ok = os.environ.get("V7_EXPECT_ALL_OK", "0") == "1"
    shot = os.environ.get("V7_BROWSER_SCREENSHOT", "").strip()
    chromium = os.environ.get("V7_CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("V7_CHROMEDRIVER", "/usr/bin/chromedriver")
    for path, pkg in ((chromium, "chromium"), (chromedriver, "chromium-driver")):
        if not os.access(path, os.X_OK):
            log(f"{path} not found: apt-get install -y {pkg}")
            return 2
    try:
        import selenium  # noqa: F401
    except ImportError:
        log("selenium is not installed: python3 -m pip install selenium")
        return 2

    profile = tempfile.mkdtemp(prefix="v7-browser-test-")
    driver = None
    ok = False
    try:
        driver = start_browser(chromium, chromedriver, profile)
        run(driver, base, timeout, expected, all_ok)
        ok = True
    except Failure as e:
        log(f"FAIL: {e}")
    except Exception as e:  # a WebDriver error (page unreachable, browser crashed) is a failure too
        log(f"FAIL: {type(e).__name__}: {e}")
    finally:
        if driver is not None:
            if not ok:
                try:
                    log(f"page state: {driver.execute_script(JS_DIAG)}")
                except Exception:
                    pass
            if shot:
                try:
                    driver.save_screenshot(shot)
                    log(f"screenshot: {shot}")
                except Exception as e:
                    log(f"screenshot failed: {e}")
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"browser: {1 if ok else 0} passed, {0 if ok else 1} failed", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
