"""Two people chat in the browser demo served by the gateway at ``/``.

Each person has a browser context of their own (separate storage, separate WebSocket). Every
step waits for what the page shows; nothing sleeps.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
WAIT_MS = 15_000


class Person:
    """One browser context with the demo page open, plus the console errors it logged."""

    def __init__(self, browser: Any, base_url: str, prefix: str):
        self.context = browser.new_context(base_url=base_url)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.username = f"{prefix}_{secrets.token_hex(4)}"
        self.user_id = ""

    def register(self, expect: Any) -> None:
        self.page.goto("/")
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Register").click()
        expect(self.page.get_by_role("status")).to_have_text("online")
        self.user_id = self.page.locator("#my-id").inner_text()
        assert self.user_id

    def say(self, text: str) -> None:
        self.page.get_by_label("Message", exact=True).fill(text)
        self.page.get_by_role("button", name="Send").click()

    def shoot(self, artifacts: Path, name: str) -> Path:
        path = artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def test_the_page_does_not_shadow_the_api(stack):
    with httpx.Client(base_url=stack.api) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src" not in page.headers["content-security-policy"]  # 'self' only
        assert http.get("/static/app.js").status_code == 200
        assert http.get("/health").json()["status"] in ("ok", "degraded")
        assert http.get("/api/v1/chats").status_code == 401
        assert http.get("/api/v1/no-such-route").status_code == 404


def test_two_people_chat_live(stack, browser, artifacts):
    expect = patient_expect()

    ann, bob = Person(browser, stack.api, "ann"), Person(browser, stack.api, "bob")
    try:
        ann.register(expect)
        bob.register(expect)
        _direct_chat(ann, bob, expect)
        _message_typing_and_read(ann, bob, expect)
        shots = [ann.shoot(artifacts, "sender"), bob.shoot(artifacts, "recipient")]
        print("browser screenshots:", *shots)
        assert ann.errors == [] and bob.errors == []
    finally:
        ann.context.close()
        bob.context.close()


def test_pages_reconnect_after_a_gateway_restart(stack, browser):
    """Last in the module: it restarts the gateway. A message written while the gateway is
    down waits in the page's outbox, goes out on reconnect and is read on the other side."""
    expect = patient_expect()

    ann, bob = Person(browser, stack.api, "ann"), Person(browser, stack.api, "bob")
    try:
        ann.register(expect)
        bob.register(expect)
        _direct_chat(ann, bob, expect)
        stack.stop("gateway")
        expect(ann.page.get_by_role("status")).not_to_have_text("online")
        ann.say("written while offline")
        expect(ann.page.locator("#messages li.own")).to_have_attribute("data-status", "pending")
        stack.start("gateway")
        stack.wait_ready("gateway")
        expect(bob.page.locator("#messages li.other .text")).to_have_text("written while offline")
        expect(ann.page.locator("#messages li.own")).to_have_attribute("data-status", "read")
        expect(ann.page.get_by_role("status")).to_have_text("online")
    finally:
        ann.context.close()
        bob.context.close()


def patient_expect() -> Any:
    """Playwright's ``expect`` waiting 20 s instead of 5: a loaded CI machine renders late."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    return expect


def _direct_chat(ann: Person, bob: Person, expect: Any) -> None:
    """Ann starts a direct chat with Bob's id; it shows up on Bob's side live, and he opens it."""
    ann.page.get_by_label("Member user ids").fill(bob.user_id)
    ann.page.get_by_role("button", name="Create chat").click()
    expect(ann.page.get_by_label("Message", exact=True)).to_be_visible()
    expect(ann.page.locator(f'#members li[data-user-id="{bob.user_id}"]')).to_have_attribute(
        "data-presence", "online")
    bob.page.locator("#chat-list button").first.click()
    expect(bob.page.get_by_label("Message", exact=True)).to_be_visible()


def _message_typing_and_read(ann: Person, bob: Person, expect: Any) -> None:
    text = "hello bob <b>not bold</b>"
    ann.say(text)
    expect(bob.page.locator("#messages li.other .text")).to_have_text(text)
    assert bob.page.locator("#messages b").count() == 0  # shown as text, never as HTML
    bob.page.get_by_label("Message", exact=True).press_sequentially("hi a", delay=20)
    expect(ann.page.locator("#typing")).to_contain_text("is typing")
    own = ann.page.locator("#messages li.own")
    expect(own).to_have_attribute("data-status", "read")  # Bob's page has the chat open
    bob.say("hi ann")
    expect(ann.page.locator("#messages li.other .text")).to_have_text("hi ann")
    expect(ann.page.locator("#typing")).to_have_text("")
