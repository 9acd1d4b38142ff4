"""Screenshots of the monitor page at / while ``gptapi-bench`` loads the server: the view a
person watches during a stress test (README's picture).

Starts a server on the embedded model (or GPTAPI_MODEL_PATH) on --port, opens the page in
headless Chromium (Debian's chromium + chromium-driver, as ``make test`` installs them), enters
the key, switches to the Monitor tab, starts ``gptapi-bench run`` and saves a screenshot every
--every seconds to --out. Prints how fresh the page's reading was at each shot.

    .venv/bin/python scripts/monitor_screenshot.py --users 40 --out /tmp/shots
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--requests-per-user", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--every", type=float, default=8.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = "gpt-" + secrets.token_hex(16)
    base = f"http://127.0.0.1:{args.port}"
    log = (args.out / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "gptapi"), "serve", "--port", str(args.port)],
        env={**os.environ, "GPTAPI_API_KEYS": key},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1440,1100",
    ):
        options.add_argument(flag)
    driver = None
    try:
        while not _ready(base):
            time.sleep(1)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.get(base + "/")
        driver.find_element(By.ID, "api-key").send_keys(key)
        driver.find_element(By.ID, "save-key").click()
        driver.find_element(By.ID, "tab-monitor").click()
        time.sleep(3)
        bench = subprocess.Popen(
            [str(BIN / "gptapi-bench"), "run", "--base-url", base, "--api-key", key,
             "--users", str(args.users), "--requests-per-user", str(args.requests_per_user),
             "--max-tokens", str(args.max_tokens), "--out", str(args.out / "bench")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for shot in range(args.shots):
            time.sleep(args.every)
            busy = driver.find_element(By.ID, "stat-busy").text
            queued = driver.find_element(By.ID, "stat-queued").text
            driver.save_screenshot(str(args.out / f"monitor-{shot}.png"))
            print(f"shot {shot}: busy {busy}, queued {queued}")
        bench.wait(timeout=3600)
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        print("console errors:", severe or "none")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(2)
        server.wait()


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/ready").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
