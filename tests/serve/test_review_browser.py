"""`labelwise review` in a real browser (headless Chromium via playwright): open the page, relabel
two images with the keyboard, exclude one, export with the button, and check the CSV."""
from __future__ import annotations

import csv
import socket
import threading
import time
from pathlib import Path

import pytest

import labelwise
from labelwise.data.demo import build_mosaics, fashion_available

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium"),
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
ORDER = ["issues", "duplicates", "disagree", "loss", "to-label"]  # the page opens the first with open items
TOKEN = "browser-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from labelwise.serve.review.app import create_review_app
    from labelwise.serve.review.session import ReviewSession

    root = tmp_path_factory.mktemp("review-browser")
    data = build_mosaics(root / "data", 160, seed=7, classes=("trouser", "bag", "sneaker"), source="fashion",
                         empty_fraction=0.1)
    run = root / "run"
    labelwise.train(data, out=run, epochs=2, backbone="cnn-small", pretrained=False, progress=False,
                    image_size=32, batch_size=16, seed=0)
    session = ReviewSession(run, who="browser")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_review_app(session, TOKEN), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield session, f"http://127.0.0.1:{port}", data
    srv.should_exit = True
    thread.join(10)


def test_relabel_exclude_export_in_the_browser(server):
    from playwright.sync_api import sync_playwright

    session, url, data = server
    ov = session.overview()
    queue = next(q for q in ORDER if ov["queues"][q]["items"])
    items = [x["id"] for x in ov["queues"][queue]["items"][:3]]
    assert len(items) == 3, f"queue {queue} has fewer than 3 images"
    names = ov["labels"]
    # expected: image 1 gets label 2 toggled, image 2 label 1 toggled, image 3 excluded
    want = {}
    for key, k in ((items[0], 1), (items[1], 0)):
        labels = set(session.current(session.items[key])[0] or [])
        labels ^= {names[k]}
        want[key] = " ".join(n for n in names if n in labels)
    original = (data / "labels.csv").read_bytes()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/?token={TOKEN}")
            heading = page.locator("#panel h2")
            heading.wait_for()
            assert heading.inner_text().startswith(items[0])
            assert "token" not in page.url  # taken out of the address bar
            page.keyboard.press("2")
            assert page.locator(".chip.on").all_inner_texts() == want[items[0]].split()
            page.keyboard.press("Enter")
            page.wait_for_function("s => document.querySelector('#panel h2').textContent.startsWith(s)", arg=items[1])
            page.keyboard.press("1")
            page.keyboard.press("Enter")
            page.wait_for_function("s => document.querySelector('#panel h2').textContent.startsWith(s)", arg=items[2])
            page.keyboard.press("x")
            page.wait_for_function("() => document.querySelector('#status').textContent.includes('saved: exclude')")
            page.click("#export")
            page.wait_for_function("() => document.querySelector('#status').textContent.includes('exported')")
            assert "1 excluded" in page.locator("#summary").inner_text()
            # the queue tab counts the three decisions
            assert "3/" in page.locator(f"nav button[data-queue='{queue}'] .count").inner_text()
            assert errors == []
        finally:
            browser.close()

    out = session.review_dir / "labels_reviewed.csv"
    with open(out, newline="") as f:
        rows = {r[0]: r[1] for r in list(csv.reader(f))[1:]}
    assert rows[items[0]] == want[items[0]]
    assert rows[items[1]] == want[items[1]]
    assert items[2] not in rows
    assert len(rows) == len(session.samples.paths) - 1
    assert (data / "labels.csv").read_bytes() == original
    log = [x for x in (session.review_dir / "decisions.jsonl").read_text().splitlines() if x]
    assert len(log) == 3 and all('"who":"browser"' in x for x in log)
