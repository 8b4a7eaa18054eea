"""The status page in a real browser: headless Chromium (Debian's package) driven by Playwright.

The page loads with no console error, shows the counts /api/status gives, shows a `<script>` file
name as text without running it, and asks for the token when one is set. GUARD_SCREENSHOT=PATH also
saves the page (docs/status-page.png is made so).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.serve_support import HOSTILE, Server, World, running_serve, serve_world

pytestmark = pytest.mark.acceptance
TOKEN = "token-for-the-browser-test-0b7c"
NO_CHROMIUM = (
    "chromium not found: install Debian's chromium package (apt-get install chromium), "
    "then run make test again"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serve_world(tmp_path_factory.mktemp("browser")) as made:
        yield made


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(NO_CHROMIUM)
    with sync_playwright() as playwright:
        # the system's Chromium, never a Playwright download; --no-sandbox: CI and containers run as root
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.problems = []  # console errors, page errors and dialogs: a page that runs a script fails
    opened.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: opened.problems.append(str(e)))
    opened.on("dialog", lambda d: (opened.problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield opened
    context.close()


def api_status(server: Server, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, text, _ = server.get("/api/status", headers)
    assert status == 200
    document: dict[str, Any] = json.loads(text)
    return document


def shown_counts(page: Any) -> dict[tuple[str, str], int]:
    counts = {}
    for row in page.locator("tr[data-kind]").all():
        counts[(row.get_attribute("data-check"), row.get_attribute("data-kind"))] = int(
            row.locator("td.n").first.inner_text()
        )
    return counts


def test_the_page_loads_clean_and_shows_the_api_counts(world: World, page: Any) -> None:
    with running_serve(world.env) as server:
        answer = page.goto(server.url)
        assert answer.status == 200
        document = api_status(server)
        expected = {(f["check"], f["kind"]): f["open"] for f in document["findings"] if f["open"]}
        assert shown_counts(page) == expected
        assert page.locator("#open-total").inner_text() == f"{document['open_total']} open"
        assert page.locator("svg.chart").count() == 1
        assert "verified (drill passed)" in page.locator("#backups").inner_text()
        assert page.locator("#weekly tr[data-number]").count() == len(document["weekly"][-1]["numbers"]) == 5
        assert "alive: 2 instances" in page.locator("#pipeline").inner_text()
        if os.environ.get("GUARD_SCREENSHOT"):
            page.screenshot(path=str(Path(os.environ["GUARD_SCREENSHOT"])), full_page=True)
        assert page.problems == []


def test_a_hostile_file_name_is_text_not_a_script(world: World, page: Any) -> None:
    with running_serve(world.env) as server:
        page.goto(server.url)
        assert page.locator("script").count() == 0
        assert f"uploads/ads/{HOSTILE}" in page.locator("#open").inner_text()
        page.reload()
        assert page.problems == []


def test_with_a_token_the_page_asks_for_it(world: World, page: Any) -> None:
    with running_serve({**world.env, "GUARD_WEB_TOKEN": TOKEN}) as server:
        answer = page.goto(server.url)
        assert answer.status == 401
        assert page.locator("tr[data-kind]").count() == 0
        page.fill("input[name=token]", "not-the-token")
        page.click("button[type=submit]")
        assert "wrong token" in page.content()
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#open")
        document = api_status(server, {"Authorization": f"Bearer {TOKEN}"})
        assert sum(shown_counts(page).values()) == document["open_total"]
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] is True and TOKEN not in cookie["value"]
        assert page.evaluate("document.cookie") == ""  # scripts cannot read it
        # the 401 of the first visit is the only console error a browser reports here
        assert all("401" in p for p in page.problems), page.problems
