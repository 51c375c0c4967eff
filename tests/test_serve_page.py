"""The page `ftcli serve` puts at `/`, in a real browser: headless Chromium (the system's `chromium`,
driven by Playwright) shows the run's facts, types a message and sees the reply stream in. The
screenshot is kept: under the test's tmp path, and copied to $FTCLI_TEST_ARTIFACTS (default
tests/artifacts/serve-page.png)."""

from __future__ import annotations

import time

import pytest

from browser import require_chromium
from serve_fixtures import keep_artifact, run  # noqa: F401 - run is a fixture

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")


@pytest.fixture(scope="module")
def url(run):
    from ftcli.serving.server import build, running_server

    served = build(run)
    with running_server(served) as base_url:
        yield base_url, served
    served.engine.close()


def test_the_page_chats_with_the_model_in_headless_chromium(url, tmp_path):
    from ftcli.generation.batched import generate_texts

    binary = require_chromium()
    base_url, served = url
    question = "Where is the treasure?"
    m, tok, settings, chat, mode = served.loaded
    want = generate_texts(m, tok, [question], settings, chat, 1, mode)[0]  # the run's generate: defaults
    # The tiny model writes its 12 tokens in milliseconds, faster than a browser paints: a pause per
    # step makes the reply arrive over half a second, so the page can be seen to draw it as it comes.
    slow = m.register_forward_pre_hook(lambda *_: time.sleep(0.04))

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(base_url)
            page.wait_for_selector("#evaltable")  # the run's eval results, base vs tuned
            assert "pirate" in page.inner_text("#title")
            assert "name_or_path" in page.inner_text("#recipe")
            assert page.locator("#losssvg path").count() == 1  # the loss curve
            assert "loss" in page.inner_text("#evaltable")
            # Every text the reply shows on its way, to see it stream rather than arrive whole.
            page.evaluate("""() => { window.seen = [];
                new MutationObserver(() => { const el = document.getElementById('streaming');
                    if (el && el.textContent) window.seen.push(el.textContent); })
                .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true}); }""")
            page.fill("#input", question)
            page.click("#send")
            page.wait_for_selector(".assistant[data-done='1']", timeout=60_000)
            reply = page.inner_text(".assistant")
            seen = page.evaluate("window.seen")
            shot = tmp_path / "serve-page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
            slow.remove()
    kept = keep_artifact(shot)
    print(f"screenshot: {kept}")
    assert reply.strip() == want.strip() and want
    assert len(set(seen)) > 1 and all(reply.startswith(s.strip()) for s in seen)  # it grew piece by piece
