"""The sandbox console in a real browser (Debian's headless Chromium, installed by
scripts/setup): a DM typed as the customer reaches the agent's view with its routing
attributes; the agent's reply reaches the customer's thread and its receipt turns
Delivered. Also the console's answers to bad input."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from igbridge.sandbox.console import Console
from igbridge.sandbox.demo import CUSTOMER, demo_stack

WAIT = 20.0  # seconds for any one thing to appear in the page


@dataclass
class Running:
    console: Console
    url: str


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    with demo_stack(tmp_path) as demo:
        con = Console(demo)
        with con.serving() as url:
            yield Running(con, url)


def chromium() -> WebDriver:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser, "Chromium is missing: run scripts/setup"
    assert driver, "chromedriver is missing: run scripts/setup"
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_page_load_timeout(WAIT)
    chrome.set_script_timeout(WAIT)
    return chrome


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chrome = chromium()
    try:
        yield chrome
    finally:
        chrome.quit()


def text_of(browser: WebDriver, css: str) -> str:
    """The text of every match, read in one script: the page re-renders on every update, so
    elements found in one call may be gone by the next."""
    text: str = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText).join(' | ')",
        css,
    )
    return text


def wait_for_text(browser: WebDriver, css: str, wanted: str) -> None:
    WebDriverWait(browser, WAIT).until(
        lambda b: wanted in text_of(b, css),
        message=f"{wanted!r} never appeared in {css}",
    )


@pytest.mark.timeout(120)
def test_a_dm_and_its_reply_through_the_console(
    console: Running, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(console.url)
    wait_for_text(browser, "#live", "live")
    # Every control can be found by its label (screen readers, keyboard users).
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.closest('template') === null && e.labels.length === 0)"
        ".map(e => e.id || e.className)"
    )
    assert unlabelled == []

    # The customer types a DM and presses Enter.
    dm = browser.find_element(By.ID, "dm-text")
    dm.send_keys("Where is my parcel? Ça fait une semaine", Keys.ENTER)

    conv = f'article.conversation[data-customer="{CUSTOMER}"]'
    wait_for_text(browser, f"{conv} .items li.in", "Where is my parcel? Ça fait une semaine")

    def attr(name: str) -> str:
        return text_of(browser, f'{conv} dd[data-attr="{name}"]')

    assert attr("Source") == "Instagram_DM"
    assert attr("ProfileUrl") == "https://www.instagram.com/ana.customer"
    assert attr("FollowerTier") == "micro"
    assert attr("CustomerTier") == "Gold"  # from the CRM
    assert "24-hour window: open, closes in 23 h" in text_of(browser, f"{conv} .clock")
    assert "SLA: waiting" in text_of(browser, f"{conv} .clock")

    # The agent answers from the keyboard.
    reply = browser.find_element(By.CSS_SELECTOR, f"{conv} textarea.reply-text")
    reply.send_keys("Hi Ana, it is on its way: tracking BR-4512", Keys.ENTER)
    wait_for_text(browser, "#thread li.business", "Hi Ana, it is on its way: tracking BR-4512")
    wait_for_text(browser, f"{conv} .items li.out .receipt.Delivered", "Delivered")
    wait_for_text(browser, f"{conv} .clock", "SLA: answered")
    assert browser.find_element(By.ID, "customer-error").text == ""
    assert browser.find_element(By.ID, "agent-error").text == ""

    shot = tmp_path / "console.png"
    assert browser.save_screenshot(str(shot))
    print(f"console screenshot: {shot}")


def test_bad_input_is_a_400_with_the_reason(console: Running) -> None:
    api = console.url + "api"
    cases = [
        ("customer/dm", {"customer": "0000", "text": "hi"}, "no such customer '0000'"),
        ("customer/dm", {"customer": CUSTOMER, "text": "  "}, "text is required"),
        ("customer/wave", {"customer": CUSTOMER}, "unknown action 'wave'"),
        ("customer/tap", {"customer": CUSTOMER, "text": "Yes"}, "no quick reply 'Yes'"),
        ("customer/dm", {"customer": CUSTOMER, "text": "x" * 2001}, "text: String should have"),
        ("agent/reply", {"customer": CUSTOMER, "text": ""}, "text: String should have"),
        ("agent/reply", {"customer": CUSTOMER, "text": "hi", "from": "Robot"}, "from: Input"),
    ]
    for path, body, reason in cases:
        resp = httpx.post(f"{api}/{path}", json=body, timeout=10)
        assert resp.status_code == 400, (path, body, resp.text)
        assert reason in resp.json()["error"], (path, resp.json())
    resp = httpx.post(f"{api}/customer/dm", content=b"{not json", timeout=10)
    assert resp.status_code == 400
    assert "Invalid JSON" in resp.json()["error"]
    state = httpx.get(f"{api}/state", timeout=10).json()
    assert state["refused"] == {"customer": 6, "agent": 2}
    assert console.console.demo.sb.genesys.snapshot() == []  # nothing reached Genesys
