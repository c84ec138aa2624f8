"""Fixtures of the console's browser tests (tests/e2e/test_console*.py). `stack` here is the demo processes
with a console; a module that needs other processes or settings defines its own `stack` (and `open_page`
and `e2e` then work on that one), and a module that starts its processes otherwise defines its own `e2e`."""
from __future__ import annotations

import pytest

from tests.e2e.console_support import CHROMIUM, CHROMIUM_ARGS, PHONE, demo_console, local_only, password_of, sign_in
from tests.e2e.harness import E2E


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, rabbitmq_url):
    """The demo processes and a console, one stack for each module that asks."""
    with demo_console(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), rabbitmq_url) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, one for the module."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def e2e(stack):
    harness = E2E(stack)
    yield harness
    harness.close()


@pytest.fixture
def open_page(browser, stack):
    """open_page(name, path) → a page signed in as that reviewer (its own browser context: its own cookies),
    live and marked so that a reload would show; phone=True: a 390 px touch screen; axe=True: the page may
    inject axe-core (CSP bypassed); timezone: the browser's own time zone."""
    contexts = []

    def make(name: str = "alice", path: str = "/", *, phone: bool = False, axe: bool = False,
             timezone: str | None = None):
        shape = PHONE if phone else {"viewport": {"width": 1280, "height": 900}}
        context = browser.new_context(**shape, base_url=stack.url("console"), bypass_csp=axe,
                                      **({"timezone_id": timezone} if timezone else {}))
        local_only(context)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, name, password_of(name))
        if path != "/":
            page.goto(path)
        page.wait_for_selector('#live[data-state="live"]')
        page.evaluate("window.__noReload = true")
        return page

    yield make
    for context in contexts:
        context.close()
