"""The page in a real browser: Debian's Chromium driven by Playwright against `mlknobs serve`.

Draw a vertical stroke with the mouse -> the page reads 1; open a picture of another digit ->
it reads that digit, and a third dropped on the canvas; a file that is no picture -> predict's
message; Clear -> nothing. Along the way: every part of the page is filled in, no
request leaves the server, and the browser reports no error (a Content-Security-Policy violation
would be one). Screenshots go to the test's tmp_path, one also to /tmp/serve-screenshot.png.

Needs the `browser` extra (pip install playwright) and a system Chromium at /usr/bin/chromium
(apt-get install chromium); `playwright install` is not used: its browser download is not needed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser extra (playwright) is not installed")

import pictures  # noqa: E402
from mlknobs.io.modelfile import load_model  # noqa: E402
from mlknobs.vision.classify import classify  # noqa: E402
from mlknobs.vision.images import read_input  # noqa: E402
from serving import CHROMIUM, serve_process  # noqa: E402

SCREENSHOT_COPY = Path("/tmp/serve-screenshot.png")
WAIT_MS = 15_000
UPLOADED_DIGIT = 7
DROPPED_DIGIT = 3

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def picture_of(digit: int, model_path: Path, synthetic_splits, folder: Path) -> Path:
    """A user's picture of a test digit of class `digit` that `mlknobs predict` reads as that digit.

    The browser's answer must then agree with predict's; which digit the model gets right is the
    model's business, not the page's.
    """
    model = load_model(model_path)
    _, test = synthetic_splits
    rng = np.random.default_rng(0)
    for index in np.nonzero(test.labels == digit)[0][:20]:
        data = pictures.dark_on_light_png(test.images[index], rng)
        if classify(model, read_input(data, model.dataset))["label"] == digit:
            path = folder / f"a-{digit}.png"
            path.write_bytes(data)
            return path
    raise AssertionError(f"predict reads none of the first 20 pictures of a {digit} as a {digit}")


def test_draw_a_one_open_a_picture_and_clear(browser, synthetic_model_path, synthetic_splits, tmp_path):
    expect = sync_api.expect
    picture = picture_of(UPLOADED_DIGIT, synthetic_model_path, synthetic_splits, tmp_path)
    dropped = picture_of(DROPPED_DIGIT, synthetic_model_path, synthetic_splits, tmp_path)
    with serve_process("--model", synthetic_model_path, "--port", "0") as served:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems, requests = [], []
        # Errors only: the test's own getImageData readbacks earn a performance warning.
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(served.url)

        expect(page.get_by_test_id("model-info")).to_contain_text("mnist, 32 hidden units, test accuracy",
                                                                 timeout=WAIT_MS)
        expect(page.get_by_test_id("probabilities").locator("li")).to_have_count(10)
        expect(page.get_by_test_id("prediction")).to_have_text("–")

        # A vertical stroke down the middle of the canvas, as a user would draw a 1.
        box = page.get_by_test_id("canvas").bounding_box()
        x = box["x"] + box["width"] / 2
        page.mouse.move(x, box["y"] + box["height"] * 0.15)
        page.mouse.down()
        page.mouse.move(x + 2, box["y"] + box["height"] * 0.5, steps=10)
        prediction = page.get_by_test_id("prediction")
        expect(prediction).not_to_have_text("–", timeout=WAIT_MS)     # predicted while the button is down
        page.mouse.move(x + 4, box["y"] + box["height"] * 0.85, steps=10)
        page.mouse.up()
        expect(prediction).to_have_text(re.compile(r"^1 \d+\.\d %$"), timeout=WAIT_MS)
        expect(page.get_by_test_id("hidden-units").locator("li")).to_have_count(8)
        expect(page.get_by_test_id("probabilities").locator("li.top")).to_have_count(1)
        expect(page.get_by_test_id("probabilities").locator("li.top .label")).to_have_text("1")
        assert ink_in_network_input(page) > 0
        drawn = tmp_path / "drawn-1.png"
        page.screenshot(path=str(drawn), full_page=True, animations="disabled")
        shutil.copyfile(drawn, SCREENSHOT_COPY)

        page.get_by_test_id("file-input").set_input_files(str(picture))
        expect(prediction).to_have_text(re.compile(rf"^{UPLOADED_DIGIT} \d+\.\d %$"), timeout=WAIT_MS)
        expect(page.get_by_test_id("status")).to_have_text(f"Read from {picture.name}.")
        page.screenshot(path=str(tmp_path / f"picture-of-{UPLOADED_DIGIT}.png"), full_page=True, animations="disabled")

        drop_file(page, dropped.name, dropped.read_bytes())
        expect(prediction).to_have_text(re.compile(rf"^{DROPPED_DIGIT} \d+\.\d %$"), timeout=WAIT_MS)

        page.get_by_test_id("file-input").set_input_files(
            files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a picture"}])
        status = page.get_by_test_id("status")
        expect(status).to_have_text("picture: not an image Pillow can read (convert it to PNG or JPEG)",
                                    timeout=WAIT_MS)
        expect(status).to_have_class(re.compile(r"\berror\b"))
        expect(prediction).to_have_text("–")

        page.get_by_test_id("clear").click()
        expect(prediction).to_have_text("–")
        expect(page.get_by_test_id("hidden-units").locator("li")).to_have_count(0)
        assert ink_in_network_input(page) == 0
        page.close()
        code, _, err = served.interrupt()

    # The one error the browser reports is the file that is no picture, and nothing else (no CSP violation).
    assert problems == ["console: Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    assert requests and all(url.startswith(served.url) or url.startswith(("data:", "blob:")) for url in requests)
    assert code == 0, err


def ink_in_network_input(page) -> int:
    """Sum of the gray levels drawn on the page's 28x28 network-input canvas."""
    return page.eval_on_selector(
        "[data-testid=network-input]",
        "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.reduce((s, v, i) => s + (i % 4 === 3 ? 0 : v), 0)")


def drop_file(page, name: str, data: bytes) -> None:
    """Drop a file on the drop zone, as dragging it from the desktop does."""
    page.eval_on_selector("[data-testid=drop-zone]", """(zone, [name, bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [name, list(data)])
