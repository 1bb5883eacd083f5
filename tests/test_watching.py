"""Watching a real store: 4 gunicorn workers, a scripted run of checkouts, then its /metrics,
its alert rules' metric names, its JSON logs and its /status page in headless Chromium.

One store serves the whole module (starting gunicorn and Chromium is the slow part). The
script: 8 paid checkouts, 1 declined card, 1 canceled session, a session created again by an
idempotent replay and a conflict, and 1 paid checkout whose order the receiver refuses (so
/status has one to replay): 12 sessions, 9 paid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ADDRESS_OR, API_VERSION, DATA, ROOT, cart, payment
from tests.gunicorn_server import gunicorn_process
from tests.receiver import ERROR, OK, OrderReceiver

WORKERS = 4
API_KEY = "agent-key-SECRET-4d1f0c9a"
ADMIN = "admin-token-SECRET-77ab31e0"
METRICS_TOKEN = "metrics-token-SECRET-5e2b"
SECRETS = (API_KEY, ADMIN, METRICS_TOKEN, "whsec_test_order_receiver", "tok_visa")
BUYER = ("jane@example.com", ADDRESS_OR["line_one"], ADDRESS_OR["postal_code"])


def _headers(key: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {API_KEY}",
        "API-Version": API_VERSION,
        "Idempotency-Key": key or str(uuid.uuid4()),
        "Connection": "close",  # a new connection each time: requests spread over the workers
    }


def _post(url: str, body: dict[str, Any], key: str | None = None) -> requests.Response:
    return requests.post(url, json=body, headers=_headers(key), timeout=30)


def _checkout(url: str, token: str = "tok_visa") -> str:
    session_id = _post(f"{url}/checkout_sessions", cart()).json()["id"]
    _post(f"{url}/checkout_sessions/{session_id}/complete", payment(token))
    return session_id


class Store:
    def __init__(self, url: str, log: Path, access_log: Path, receiver: OrderReceiver) -> None:
        self.url, self.log, self.access_log, self.receiver = url, log, access_log, receiver
        self.failed_session = ""

    def workers(self, path: str) -> set[str]:
        pids = set()
        for line in self.access_log.read_text().splitlines():
            pid, _method, url, _status = line.split(" ", 3)
            if url == path:
                pids.add(pid)
        return pids


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("watching")
    receiver = OrderReceiver().start()
    config = json.loads((DATA / "config.json").read_text())
    config["orderWebhookUrl"] = receiver.url
    (tmp / "config.json").write_text(json.dumps(config))
    shutil.copy(DATA / "products.json", tmp / "products.json")
    access_log = tmp / "access.log"
    env = {
        "SHOP_CONFIG": str(tmp / "config.json"),
        "SHOP_PRODUCTS": str(tmp / "products.json"),
        "SHOP_DATABASE_URL": f"sqlite:///{tmp / 'shop.sqlite3'}",
        "SHOP_API_KEYS": f"agent:{API_KEY}",
        "SHOP_ADMIN_TOKEN": ADMIN,
        "SHOP_METRICS_TOKEN": METRICS_TOKEN,
        "SHOP_LOG_FORMAT": "json",
        "ORDER_WEBHOOK_SECRET": receiver.secret or "",
        "ACP_WEBHOOK_URL": "",
        "ACP_WEBHOOK_SECRET": "",
        "PROMETHEUS_MULTIPROC_DIR": "",  # gunicorn.conf.py makes (and removes) its own
        # %(p)s is the worker's pid: which process answered each request.
        "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} "
        "--access-logformat '%(p)s %(m)s %(U)s %(s)s'",
    }
    log = tmp / "gunicorn.log"
    with gunicorn_process(env, workers=WORKERS, threads=1, log_path=log) as (url, _proc):
        store = Store(url, log, access_log, receiver)
        for _ in range(8):
            _checkout(url)
        _checkout(url, "tok_chargeDeclined")
        canceled = _post(f"{url}/checkout_sessions", cart()).json()["id"]
        _post(f"{url}/checkout_sessions/{canceled}/cancel", {})
        key = str(uuid.uuid4())
        _post(f"{url}/checkout_sessions", cart(), key)
        assert _post(f"{url}/checkout_sessions", cart(), key).headers["Idempotent-Replayed"]
        assert _post(f"{url}/checkout_sessions", cart(("widget", 2)), key).status_code == 422
        receiver.wait_for(8, timeout=20)
        receiver.mode = ERROR
        arrived = len(receiver.requests)
        store.failed_session = _checkout(url)
        deadline = time.monotonic() + 20
        while len(receiver.requests) == arrived and time.monotonic() < deadline:
            time.sleep(0.05)
        failed = 'shop_order_deliveries_total{destination="merchant",outcome="failed"} 1.0'
        while failed not in _scrape(url) and time.monotonic() < deadline:
            time.sleep(0.05)  # the refusal is recorded just after the receiver answers
        # Each delivery is recorded just after its receiver answered, by whichever thread of
        # whichever worker sent it, in no order across them: wait until all have settled.
        while not _settled(_scrape(url)) and time.monotonic() < deadline:
            time.sleep(0.05)
        receiver.mode = OK
        yield store
    receiver.stop()


def _scrape(url: str) -> str:
    response = requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200
    return response.text


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found, f"{sample} is not in /metrics"
    return float(found[1])


COUNTED = {
    'shop_checkouts_completed_total{via="complete"}': 9,
    "shop_sessions_created_total": 12,
    "shop_sessions_canceled_total": 1,
    'shop_complete_attempts_total{outcome="completed"}': 9,
    'shop_complete_attempts_total{outcome="declined"}': 1,
    'shop_payment_failures_total{provider="test",reason="card_declined"}': 1,
    'shop_idempotent_requests_total{outcome="replayed"}': 1,
    'shop_idempotent_requests_total{outcome="conflict"}': 1,
    "shop_complete_duration_seconds_count": 10,
    'shop_order_deliveries_total{destination="merchant",outcome="delivered"}': 8,
    'shop_order_deliveries_total{destination="merchant",outcome="failed"}': 1,
    'shop_orders_undelivered{destination="merchant",state="failed"}': 1,
}


def _settled(text: str) -> bool:
    try:
        return {sample: _value(text, sample) for sample in COUNTED} == COUNTED
    except AssertionError:  # a sample not written yet
        return False


def test_every_scrape_agrees_across_four_workers(store):
    # Which sync worker accepts is the scheduler's choice: on 2 cores the two running ones can
    # take a whole burst, so bursts go on (a few at most) until three workers have answered.
    scrapes: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _burst in range(10):
            scrapes += pool.map(lambda _: _scrape(store.url), range(24))
            answered_by = store.workers("/metrics")
            if len(answered_by) >= 3:
                break
    assert len(answered_by) >= 3, f"the scrapes reached only workers {answered_by}"
    for text in scrapes:
        assert {sample: _value(text, sample) for sample in COUNTED} == COUNTED
    # A worker that dies takes nothing with it: its counts stay in the directory.
    print(f"\n/metrics answered by workers {sorted(answered_by)}; every scrape: {COUNTED}")


def test_every_metric_in_the_alert_rules_is_exposed(store):
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    expressions = "\n".join(re.findall(r"expr: (\|\n(?:\s{10}.*\n)+|.*)", rules))
    names = set(re.findall(r"\bshop_[a-z_]+", expressions))
    assert len(names) == 5, names
    exposed = set(re.findall(r"^(shop_[a-z_]+)[{ ]", _scrape(store.url), re.MULTILINE))
    assert names <= exposed, f"in the rules but not in /metrics: {names - exposed}"


def test_json_logs_name_requests_and_events_and_never_a_secret(store):
    text = store.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line.get("logger") == "shop.requests"]
    complete = [r for r in requests_logged if r["path"].endswith("/complete")]
    assert len(complete) == 10
    assert all(r["session_id"] in r["path"] for r in complete)
    assert {"request_id", "method", "path", "status", "duration_ms"} <= set(complete[0])
    created = [r for r in requests_logged if r["path"] == "/checkout_sessions"]
    assert all(r["session_id"].startswith("cs_") for r in created if r["status"] == 201)
    events = [line["event"] for line in lines if line.get("logger") == "shop.events"]
    assert events.count("session_completed") == 9
    assert events.count("payment_failed") == 1
    assert events.count("order_delivered") == 8
    assert events.count("order_delivery_failed") == 1
    for secret in SECRETS + BUYER:
        assert secret not in text, f"{secret!r} appears in the log"


def test_a_worker_that_dies_takes_no_count_with_it(store):
    """SIGKILL one worker: gunicorn starts another (child_exit runs), and the dead worker's
    counts stay in the shared directory, so the next scrapes still add up to the same."""
    victim = int(sorted(store.workers("/metrics"))[0].strip("<>"))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        time.sleep(0.2)
        with ThreadPoolExecutor(max_workers=8) as pool:
            scrapes = list(pool.map(lambda _: _scrape(store.url), range(16)))
        fresh = store.workers("/metrics") - {f"<{victim}>"}
        if len(fresh) >= 4 or time.monotonic() > deadline:
            break
    assert len(fresh) >= 4, f"no replacement worker answered: {fresh}"
    for text in scrapes:
        assert {sample: _value(text, sample) for sample in COUNTED} == COUNTED


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=420,1600",  # a phone's width
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("CI"):
            pytest.fail("chromium or chromedriver is missing: .ci/run installs them")
        pytest.skip("Debian chromium and chromium-driver are not installed here; CI runs this")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    # A click that submits a form returns before the next page has loaded: each lookup
    # waits (up to this long) for its element to appear on the page that follows.
    driver.implicitly_wait(15)
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_in_chromium(store, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{store.url}/status")
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "sign-in").click()
    shown = {
        name: browser.find_element(By.ID, name).text
        for name in ("sessions-created", "sessions-completed", "completion-rate", "p95-complete")
    }
    assert shown["sessions-created"] == "12"
    assert shown["sessions-completed"] == "9"
    assert shown["completion-rate"] == "90.0%"  # 9 / (9 + 1 declined)
    assert shown["p95-complete"].startswith("≤ ")
    assert "card_declined" in browser.find_element(By.ID, "failures").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart rect.bar")) == 24
    health = browser.find_element(By.ID, "health").text
    screenshot = tmp_path / "status.png"
    browser.save_screenshot(str(screenshot))
    print(f"\n/status showed {shown}; health: {health!r}; screenshot: {screenshot}")

    replay = browser.find_element(
        By.CSS_SELECTOR, f'button.replay[data-session="{store.failed_session}"]'
    )
    arrived = len(store.receiver.deliveries)
    replay.click()
    note = browser.find_element(By.ID, "note").text
    assert note == f"Replayed {store.failed_session}: order.created -> merchant: delivered"
    assert len(store.receiver.wait_for(arrived + 1)) == arrived + 1
    assert browser.find_elements(By.ID, "all-delivered")
    browser.save_screenshot(str(tmp_path / "status-after-replay.png"))
    print(f"after replay: {note!r}; screenshot: {tmp_path / 'status-after-replay.png'}")
