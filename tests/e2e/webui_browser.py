"""A real browser on the web UI: Debian's headless Chromium driven by Selenium through Debian's chromedriver
(both from apt: tests/hosts/install-host-deps), so nothing is downloaded at test time (Selenium Manager is
never asked: the driver's path is given). And the web UI's own HTTP API, as its page calls it."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser(download_dir: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait_for(what: str, check: Any, timeout_s: float, every_s: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except Exception as err:  # noqa: BLE001 - the page is still changing; the last error is reported
            last_error = err
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}" +
                         (f" (last error: {last_error})" if last_error else ""))


def log_in(driver: Any, base: str, email: str, password: str) -> None:
    """Open the web UI and sign in through its login form, as a person does."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/auth")
    email_box = wait_for("the login form", lambda: driver.find_element(By.CSS_SELECTOR, "input[type=email]"), 120)
    email_box.send_keys(email)
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("the chat page after the login", lambda: driver.find_elements(By.ID, "chat-input"), 120)


def dismiss_dialogs(driver: Any) -> None:
    """The first login of an admin shows the release notes: close them (Escape, or their button)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for button in driver.find_elements(By.XPATH, "//button[contains(., \"Okay, Let's Go!\")]"):
        if button.is_displayed():
            button.click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)


def send_message(driver: Any, text: str, timeout_s: float = 240) -> str:
    """Type ``text`` into the chat box, send it, and return the assistant's answer once it stops growing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait_for("the chat input", lambda: driver.find_element(By.ID, "chat-input"), 60)
    box.click()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)

    def answer() -> str:
        parts = driver.find_elements(By.ID, "response-content-container")
        return parts[-1].text.strip() if parts else ""

    first = wait_for("the model's answer on the page", answer, timeout_s)
    # Streaming: wait until the text has stopped changing for 3 s.
    stable, last = time.monotonic(), first
    while time.monotonic() - stable < 3:
        time.sleep(0.5)
        now = answer()
        if now != last:
            stable, last = time.monotonic(), now
    return last


def chat_on_the_page(base: str, email: str, password: str, text: str, download_dir: Path,
                     screenshot: Path | None = None) -> tuple[str, list[str], float]:
    """A whole browser session: log in through the form, send ``text``, read the answer off the page.
    Returns the answer, the resources the page loaded from outside ``base``, and the seconds to log in;
    ``screenshot``: where to save the page with the answer."""
    driver = browser(download_dir)
    try:
        started = time.monotonic()
        log_in(driver, base, email, password)
        dismiss_dialogs(driver)
        logged_in_s = time.monotonic() - started
        answer = send_message(driver, text)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        outside = [str(e["name"]) for e in driver.execute_script("return performance.getEntriesByType('resource')")
                   if not str(e["name"]).startswith((base, "data:", "blob:"))]
    finally:
        driver.quit()
    return answer, outside, logged_in_s


def api(base: str, path: str, token: str | None = None, body: Any = None,
        files: dict[str, tuple[str, bytes]] | None = None, timeout_s: float = 180) -> Any:
    """A call to the web UI's own API (JSON, or a multipart upload of ``files``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data: bytes | None = None
    if files:
        boundary = uuid.uuid4().hex
        chunks = []
        for field, (name, content) in files.items():
            chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                          "Content-Type: text/plain\r\n\r\n".encode() + content + b"\r\n")
        data = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the test target
        return json.loads(response.read())
