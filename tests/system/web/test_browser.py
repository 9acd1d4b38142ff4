"""The playground at / in a real browser (headless Chromium through chromedriver, Debian's
chromium and chromium-driver) against the live server on the embedded model: a key, a streamed
chat and its Stop, the three task forms, the monitor following a burst, a wrong key's message,
all under the page's strict CSP (the browser's console must report no violation).

Screenshots of each view go to $GPTAPI_SCREENSHOT_DIR (default tests/artifacts/screenshots,
git-ignored). README's picture of the monitor under load comes from scripts/monitor_screenshot.py.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import API_KEY, LiveServer
from tests.helpers import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WRONG_KEY = "wrong-key-0123456789abcdef"
SHOTS = Path(
    os.environ.get("GPTAPI_SCREENSHOT_DIR") or REPO / "tests" / "artifacts" / "screenshots"
)
# Long enough that Stop comes while tokens still arrive (greedy: the model counts on).
LONG_PROMPT = "Count from 1 to 500, one number per line, with nothing else."
LONG_MAX_TOKENS = 400


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        assert binary.exists(), f"{binary} is missing: `make test` installs it (Debian)"
    options = Options()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: Chromium's sandbox cannot start as root (CI containers).
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1100", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def by_id(driver: WebDriver, element_id: str) -> Any:
    return driver.find_element(By.ID, element_id)


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(by_id(driver, element_id).text)


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], seconds: float = 60) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def open_page(driver: WebDriver, server: LiveServer) -> None:
    driver.get(server.base_url + "/")
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def use_key(driver: WebDriver, key: str) -> None:
    field = by_id(driver, "api-key")
    field.clear()
    field.send_keys(key)
    by_id(driver, "save-key").click()


def set_value(driver: WebDriver, element_id: str, value: str) -> None:
    field = by_id(driver, element_id)
    field.clear()
    if value:
        field.send_keys(value)


def no_csp_violations(driver: WebDriver) -> None:
    messages = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m], messages


def shoot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


@pytest.fixture()
def page(browser: WebDriver, live_server: LiveServer) -> Iterator[WebDriver]:
    """The page, freshly loaded, with the valid key accepted."""
    open_page(browser, live_server)
    use_key(browser, API_KEY)
    wait(browser, lambda d: "Key accepted" in text_of(d, "key-status"))
    yield browser
    no_csp_violations(browser)


def test_a_wrong_key_shows_the_servers_message(browser: WebDriver, live_server: LiveServer) -> None:
    open_page(browser, live_server)
    use_key(browser, WRONG_KEY)
    wait(browser, lambda d: d.find_element(By.ID, "key-error").is_displayed())
    message = text_of(browser, "key-error")
    assert "refused this key" in message and "invalid API key" in message, message
    shoot(browser, "wrong-key")
    # The page's own calls fail the same way, with the same message.
    by_id(browser, "chat-input").send_keys("Hello")
    by_id(browser, "chat-send").click()
    wait(browser, lambda d: "invalid API key" in text_of(d, "chat-error"))
    assert by_id(browser, "chat-input").get_attribute("value") == "Hello"  # given back
    no_csp_violations(browser)
    browser.execute_script("sessionStorage.clear()")  # the next tests start without it


def test_the_key_stays_in_the_tab_only(page: WebDriver) -> None:
    assert page.execute_script("return sessionStorage.getItem('gptapi.apiKey')") == API_KEY
    assert page.execute_script("return localStorage.length") == 0
    assert page.get_cookies() == []
    assert API_KEY not in page.current_url
    assert by_id(page, "api-key").get_attribute("value") == ""


def test_a_chat_answer_streams_and_stop_ends_it(page: WebDriver, live_server: LiveServer) -> None:
    set_value(page, "max-tokens", str(LONG_MAX_TOKENS))
    set_value(page, "temperature", "0")
    by_id(page, "chat-input").send_keys(LONG_PROMPT)
    by_id(page, "chat-send").click()

    def answer() -> str:
        found = page.find_elements(By.CSS_SELECTOR, "#chat-log .message.assistant")
        return str(found[-1].text) if found else ""

    wait(page, lambda d: len(answer()) > 0)
    first = len(answer())
    wait(page, lambda d: len(answer()) > first + 5)  # it grows while the stream is read
    assert by_id(page, "chat-stop").is_enabled()
    by_id(page, "chat-stop").click()
    wait(page, lambda d: not by_id(d, "chat-stop").is_enabled(), seconds=10)
    stopped = answer()
    shoot(page, "chat")
    time.sleep(1.0)
    assert answer() == stopped  # nothing more arrives
    assert "stopped" in str(page.find_elements(By.CSS_SELECTOR, ".message.assistant")[-1]
                            .get_attribute("class"))  # fmt: skip
    usage = text_of(page, "chat-usage")
    assert "stopped" in usage
    # The server cancelled the generation too: far fewer tokens than asked for.
    request_id = re.search(r"request ([0-9a-f]{32})", usage)
    assert request_id, usage
    entry = ring_entry(live_server, request_id.group(1))
    assert entry["completion_tokens"] is None or entry["completion_tokens"] < LONG_MAX_TOKENS

    # A whole answer: usage from the stream's last chunk, times measured in the browser.
    set_value(page, "max-tokens", "16")
    by_id(page, "chat-input").send_keys("Say hello.")
    by_id(page, "chat-send").click()
    wait(page, lambda d: "finish" in text_of(d, "chat-usage"))
    usage = text_of(page, "chat-usage")
    assert re.search(r"prompt \d+ tokens \(\d+ cached\) · completion \d+", usage), usage
    assert len(page.find_elements(By.CSS_SELECTOR, "#chat-log .message.assistant")) == 2


def ring_entry(server: LiveServer, request_id: str) -> dict[str, Any]:
    """The request's entry in GET /monitor/requests (written once the request has ended)."""
    with server.client() as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entries = client.get("/monitor/requests", params={"limit": 1000}).json()["requests"]
            found = [e for e in entries if e["request_id"] == request_id]
            if found:
                return dict(found[0])
            time.sleep(0.2)
    raise AssertionError(f"request {request_id} not in /monitor/requests within 30 s")


def test_each_task_form_answers_with_usage_and_timings(page: WebDriver) -> None:
    by_id(page, "tab-tasks").click()
    set_value(page, "max-tokens", "24")
    set_value(page, "temperature", "")
    for prefix in ("generate", "summarize", "answer"):
        by_id(page, f"{prefix}-run").click()
        wait(page, lambda d, p=prefix: "tokens/s" in text_of(d, f"{p}-usage"))
        usage = text_of(page, f"{prefix}-usage")
        assert re.search(r"prompt \d+ tokens \(\d+ cached\) · completion \d+", usage), usage
        assert "queue" in usage and "first token" in usage
        assert text_of(page, f"{prefix}-output").strip(), prefix
    shoot(page, "tasks")

    # Structured output: the schema goes to the route as json_schema; the text is that JSON.
    schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    set_value(page, "json-schema", json.dumps(schema))
    set_value(page, "max-tokens", "96")
    by_id(page, "answer-run").click()
    wait(page, lambda d: "tokens/s" in text_of(d, "answer-usage"))
    answer = json.loads(text_of(page, "answer-output"))
    assert isinstance(answer["code"], str)
    set_value(page, "json-schema", "")


def burst(server: LiveServer, n: int = 8) -> list[int]:
    """n concurrent task requests; their statuses."""
    statuses: list[int] = []

    def one(i: int) -> None:
        with server.client() as client:
            body = {"prompt": f"Write a short poem about the number {i}.", "max_tokens": 64}
            statuses.append(client.post("/generate-text", json=body).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return statuses


def test_the_monitor_follows_a_burst_of_requests(page: WebDriver, live_server: LiveServer) -> None:
    by_id(page, "tab-monitor").click()
    wait(page, lambda d: int(by_id(d, "plot-memory").get_attribute("data-points") or 0) >= 2)
    assert text_of(page, "stat-rss").endswith(("MiB", "GiB"))
    assert text_of(page, "stat-pss").endswith(("MiB", "GiB"))

    def tokens(d: WebDriver) -> int:
        return int(re.sub(r"\D", "", text_of(d, "stat-completion-tokens")) or 0)

    before = tokens(page)
    result: dict[str, list[int]] = {}
    sender = threading.Thread(target=lambda: result.setdefault("statuses", burst(live_server)))
    sender.start()
    # The busy slots show on the plot while the burst decodes, the tokens once it ends.
    wait(page, lambda d: float(by_id(d, "plot-slots").get_attribute("data-peak") or 0) >= 1, 120)
    sender.join(180)
    assert result["statuses"] == [200] * 8
    wait(page, lambda d: tokens(d) >= before + 8, 30)
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent-requests tbody tr")) >= 8)
    rows = [r.text for r in page.find_elements(By.CSS_SELECTOR, "#recent-requests tbody tr")]
    assert sum("/generate-text" in r for r in rows) >= 8, rows
    assert all(API_KEY not in r for r in rows)
    wait(page, lambda d: float(by_id(d, "plot-tps").get_attribute("data-peak") or 0) > 0, 30)
    # Refusals show as a rate: requests whose own deadline no forecast can meet.
    with live_server.client() as client:
        for _ in range(3):
            refused = client.post(
                "/generate-text", json={"prompt": "Hi", "max_tokens": 64},
                headers={"X-Request-Timeout": "0.001"},
            )  # fmt: skip
            assert refused.status_code == 503, refused.text
    wait(page, lambda d: float(by_id(d, "plot-refusals").get_attribute("data-peak") or 0) > 0, 30)
    shoot(page, "monitor")


def test_the_page_answers_without_a_key_and_its_calls_need_one(live_server: LiveServer) -> None:
    # Outside the browser: what the browser test relies on, said plainly.
    with httpx.Client(base_url=live_server.base_url, timeout=10) as client:
        assert client.get("/").status_code == 200
        assert client.get("/monitor/stats").status_code == 401
