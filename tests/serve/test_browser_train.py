"""The training panel in a real browser: Debian's Chromium driven by Playwright, against the app
served by uvicorn in this process on the synthetic digits.

Train 32 hidden units for an epoch and watch the loss chart grow to `done`, then draw a 1 on the
network just trained; start a long run and stop it; a learning rate that diverges ends `failed`
with the library's message, its curve still drawn. The browser reports no error along the way.
Screenshots go to the test's tmp_path (the finished panel also to /tmp/serve-train.png).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser extra (playwright) is not installed")

from mlknobs.cli.serve import setting_flags  # noqa: E402
from mlknobs.io.modelfile import load_model  # noqa: E402
from mlknobs.serve.app import create_app  # noqa: E402
from mlknobs.serve.train_api import TrainingPanel  # noqa: E402
from mlknobs.training.run import DataSource  # noqa: E402
from serving import CHROMIUM, uvicorn_thread  # noqa: E402

WAIT_MS = 15_000
RUN_MS = 60_000
SCREENSHOT_COPY = Path("/tmp/serve-train.png")

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def served(synthetic_model_path, synthetic_data_dir, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    panel = TrainingPanel(runs, DataSource(synthetic_data_dir), setting_flags())
    app = create_app(load_model(synthetic_model_path), synthetic_model_path, training=panel)
    with uvicorn_thread(app) as url:
        yield url, runs


@pytest.fixture
def page(browser, served):
    url, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems = []
    page.expected_problems = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url)
    sync_api.expect(page.get_by_test_id("train-start")).to_be_enabled(timeout=WAIT_MS)
    sync_api.expect(page.get_by_test_id("train-status")).to_have_text(re.compile("^No run yet"))
    # Record every value data-points takes, to see the chart grow rather than appear at once.
    page.eval_on_selector("[data-testid=train-loss-chart]", """chart => {
        window.pointsSeen = [];
        new MutationObserver(() => window.pointsSeen.push(Number(chart.dataset.points)))
            .observe(chart, {attributes: true, attributeFilter: ["data-points"]});
    }""")
    yield page
    page.close()
    assert problems == page.expected_problems        # no error but those a test expects (no CSP violation)


def set_settings(page, **values) -> None:
    page.locator("details.more").evaluate("d => d.open = true")
    for test_id, value in values.items():
        page.get_by_test_id(f"train-{test_id}").fill(str(value))


def test_train_32_units_watch_the_loss_fall_then_draw_a_one_on_the_new_network(page, served, tmp_path):
    expect = sync_api.expect
    _, runs = served
    set_settings(page, **{"hidden-size": 32, "epochs": 1, "batch-size": 8})      # 1,250 steps: a second or so
    page.get_by_test_id("train-start").click()
    status = page.get_by_test_id("train-status")
    expect(status).to_have_text(re.compile(r"^running"), timeout=WAIT_MS)
    expect(page.get_by_test_id("train-stop")).to_be_enabled()
    expect(status).to_have_text(re.compile(r"^done: test accuracy \d+\.\d\d %"), timeout=RUN_MS)

    chart = page.get_by_test_id("train-loss-chart")
    assert int(chart.get_attribute("data-points")) == 1250             # 10,000 digits / 8, a point a step
    seen = [n for n in page.evaluate("window.pointsSeen") if n > 0]
    assert len(set(seen)) >= 2 and seen == sorted(seen), seen           # it grew while the run went on
    expect(page.get_by_test_id("train-history").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("train-tiles").locator("canvas")).to_have_count(32)
    expect(page.get_by_test_id("train-digits").locator("canvas")).to_have_count(8)
    saved = next(runs.glob("run-*.npz"))
    expect(page.get_by_test_id("model")).to_have_text(re.compile(rf"^Model {saved.name}: mnist, 32 hidden units"))
    expect(page.get_by_test_id("train-stop")).to_be_disabled()
    page.locator("#train-panel").screenshot(path=str(tmp_path / "trained.png"), animations="disabled")
    shutil.copyfile(tmp_path / "trained.png", SCREENSHOT_COPY)

    # A vertical stroke, as a user draws a 1: read by the network just trained.
    page.get_by_test_id("canvas").scroll_into_view_if_needed()
    box = page.get_by_test_id("canvas").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(x + 4, box["y"] + box["height"] * 0.85, steps=15)
    page.mouse.up()
    expect(page.get_by_test_id("prediction")).to_have_text(re.compile(r"^1 \d+\.\d %$"), timeout=WAIT_MS)


def test_start_then_stop_keeps_the_checkpoint_and_says_how_to_resume(page, served, synthetic_data_dir):
    expect = sync_api.expect
    _, runs = served
    set_settings(page, **{"hidden-size": 16, "epochs": 300, "batch-size": 32})
    page.get_by_test_id("train-start").click()
    status = page.get_by_test_id("train-status")
    expect(status).to_have_text(re.compile(r"^running: epoch ([2-9]|\d\d+) of 300"), timeout=RUN_MS)
    expect(page.get_by_test_id("train-start")).to_be_disabled()
    page.get_by_test_id("train-stop").click()
    expect(status).to_have_text(re.compile(r"^stopped: epoch \d+ of 300 is saved in .*\.ckpt\.npz$"), timeout=WAIT_MS)
    checkpoint = next(runs.glob("run-*.ckpt.npz"))
    out = checkpoint.with_name(checkpoint.name.replace(".ckpt", ""))
    resume = f"mlknobs train --resume --out {out} --data-dir {synthetic_data_dir}"
    expect(page.locator("#train-next code")).to_have_text(resume)
    expect(page.get_by_test_id("train-start")).to_be_enabled()
    assert int(page.get_by_test_id("train-loss-chart").get_attribute("data-points")) > 313   # a whole epoch and more
    expect(page.get_by_test_id("model")).to_have_text(re.compile(r"^Model small\.npz"))    # not replaced


def test_a_diverging_run_shows_failed_with_the_librarys_message_and_its_curve(page, tmp_path):
    expect = sync_api.expect
    set_settings(page, **{"hidden-size": 32, "epochs": 1, "lr": 1000})
    page.get_by_test_id("train-start").click()
    status = page.get_by_test_id("train-status")
    expect(status).to_have_text(re.compile(r"^failed: training (diverged|collapsed) .*learning rate 1000"),
                                timeout=RUN_MS)
    expect(page.locator("#train-next")).to_contain_text("lr-find")
    assert int(page.get_by_test_id("train-loss-chart").get_attribute("data-points")) > 0
    page.locator("#train-panel").screenshot(path=str(tmp_path / "diverged.png"), animations="disabled")

    # A bad setting is refused before any run, naming it; the field is marked.
    page.expected_problems = ["console: Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    set_settings(page, **{"hidden-size": 100000})
    page.get_by_test_id("train-start").click()
    expect(page.locator("#train-error")).to_contain_text("hidden_size must be a whole number from 1 to 4,096 here")
    expect(page.get_by_test_id("train-hidden-size")).to_have_attribute("aria-invalid", "true")
    expect(status).to_have_text(re.compile(r"^failed"))                   # the last run's state stays


@pytest.mark.parametrize("flags", ["the CLI's", "none"])
def test_the_settings_hooks_are_the_same_whatever_flags_the_server_was_given(browser, synthetic_model_path,
                                                                            synthetic_data_dir, tmp_path, flags):
    """The issue's data-testid names are a public interface: train-hidden-size, train-epochs, train-lr."""
    panel = TrainingPanel(tmp_path, DataSource(synthetic_data_dir), setting_flags() if flags == "the CLI's" else {})
    app = create_app(load_model(synthetic_model_path), synthetic_model_path, training=panel)
    with uvicorn_thread(app) as url:
        page = browser.new_page()
        try:
            page.goto(url)
            for test_id in ("train-hidden-size", "train-epochs", "train-lr", "train-batch-size", "train-start"):
                sync_api.expect(page.get_by_test_id(test_id)).to_be_visible(timeout=WAIT_MS)
            assert page.locator("[data-testid=train-learning-rate]").count() == 0
        finally:
            page.close()
