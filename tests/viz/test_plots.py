"""`mlknobs plot` and `mlknobs train --snapshots` through the real CLI; plots.py and snapshots.py directly."""

import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

from clirun import run
from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.io.modelfile import load_model, save_model
from mlknobs.nn.model import Params
from mlknobs.training.loop import Progress, fit
from mlknobs.viz import plots
from mlknobs.viz.plots import most_confident_mistakes
from mlknobs.viz.snapshots import FRAMES_PER_EPOCH, MAX_FRAMES, WeightSnapshots

pytest.importorskip("matplotlib")


def plot(kind, model, out, data_dir, *extra):
    return run("plot", kind, "--model", model, "--out", out, "--data-dir", data_dir, *extra)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


# Sizes follow from the fixed layouts in plots.py at 100 dpi; synthetic_model_path has H = 32. Grid
# pictures are at least 8" wide, plus 0.9" for title and margin; a weight cell is 1" x 37/32",
# a mistake cell 36 x 42 pixels of 1.1/28", plus a 0.1" margin each side.
@pytest.mark.parametrize("kind, extra, size", [
    ("weights", [], (800, 784)),                        # 32 units: 6 x 6 cells
    ("weights", ["--max-units", "4"], (800, 321)),      # 2 x 2 cells
    ("history", [], (1100, 450)),
    ("confusion", [], (850, 750)),
    ("mistakes", [], (1151, 915)),                      # 40 mistakes: 8 x 5 cells
    ("mistakes", ["--count", "3"], (800, 255)),         # one row of 3
    ("augment", [], (1089, 1159)),                      # 8 digits, each with 7 distorted copies
])
def test_each_kind_writes_a_png_of_the_expected_size(synthetic_model_path, synthetic_data_dir, tmp_path, kind, extra,
                                                     size):
    out = tmp_path / f"{kind}.png"
    result = plot(kind, synthetic_model_path, out, synthetic_data_dir, *extra)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {out}"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == size and image.mode == "RGBA"
        image.load()                                    # decodes the whole file: it is complete
        assert len(np.unique(np.asarray(image.convert("L")))) > 50          # drawn, not blank
    assert [p.name for p in tmp_path.iterdir()] == [out.name]    # no temp file left beside it


def test_svg_and_pdf_follow_the_suffix_and_other_suffixes_are_refused(synthetic_model_path, synthetic_data_dir,
                                                                       tmp_path):
    assert plot("history", synthetic_model_path, tmp_path / "h.svg", synthetic_data_dir).exit_code == 0
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:1000]
    assert plot("history", synthetic_model_path, tmp_path / "h.pdf", synthetic_data_dir).exit_code == 0
    assert (tmp_path / "h.pdf").read_bytes().startswith(b"%PDF")
    assert_one_line_error(plot("history", synthetic_model_path, tmp_path / "h.jpg", synthetic_data_dir),
                          "h.jpg", ".png, .svg or .pdf")


def test_default_out_is_named_after_the_kind(synthetic_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("plot", "history", "--model", synthetic_model_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "history.png").is_file()


def test_missing_model_is_a_one_line_error(tmp_path, synthetic_data_dir):
    result = plot("weights", tmp_path / "nope.npz", tmp_path / "w.png", synthetic_data_dir)
    assert_one_line_error(result, "no model file at", "nope.npz")
    assert not (tmp_path / "w.png").exists()


@pytest.mark.parametrize("logged", [False, True])
def test_plot_history_reads_the_model_file_once(synthetic_model_path, tmp_path, monkeypatch, logged):
    """One model: its epochs (1100 pixels wide); with logged step losses, the comparison figure and
    its step panel (at least 1400): either way the file is read once."""
    import mlknobs.io.modelfile as modelfile

    model = load_model(synthetic_model_path)
    model.step_losses = [[1, 2.0], [2, 1.5]] if logged else []
    save_model(tmp_path / "m.npz", model)
    reads, real_load_model = [], modelfile.load_model
    monkeypatch.setattr(modelfile, "load_model", lambda path, *args, **kwargs: (
        reads.append(path), real_load_model(path, *args, **kwargs))[1])
    result = run("plot", "history", "--model", tmp_path / "m.npz", "--out", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    assert reads == [tmp_path / "m.npz"]
    width = Image.open(tmp_path / "h.png").size[0]
    assert width >= 1400 if logged else width == 1100


def test_model_without_history_is_a_one_line_error(synthetic_model_path, synthetic_data_dir, tmp_path):
    model = load_model(synthetic_model_path)
    model.history = []
    save_model(tmp_path / "bare.npz", model)
    result = plot("history", tmp_path / "bare.npz", tmp_path / "h.png", synthetic_data_dir)
    assert_one_line_error(result, "bare.npz has no training history")


@pytest.mark.parametrize("target, reason", [("missing-folder/w.png", "does not exist"),
                                            ("a-file/w.png", "is a file, not a folder")])
def test_unwritable_path_is_a_one_line_error(synthetic_model_path, synthetic_data_dir, tmp_path, target, reason):
    (tmp_path / "a-file").write_text("not a folder")
    result = plot("weights", synthetic_model_path, tmp_path / target, synthetic_data_dir)
    assert_one_line_error(result, f"cannot write {tmp_path / target}", reason)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_a_one_line_error(synthetic_model_path, synthetic_data_dir, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    result = plot("weights", synthetic_model_path, folder / "w.png", synthetic_data_dir)
    assert_one_line_error(result, "cannot write", "is not writable")


def test_a_failed_write_is_a_one_line_error(synthetic_model_path, synthetic_data_dir, tmp_path, monkeypatch):
    def disk_full(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "atomic_write", disk_full)
    result = plot("history", synthetic_model_path, tmp_path / "h.png", synthetic_data_dir)
    assert_one_line_error(result, f"cannot write {tmp_path / 'h.png'}: No space left on device")


def test_missing_matplotlib_tells_how_to_install_it(synthetic_model_path, synthetic_data_dir, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)    # None in sys.modules makes `import` fail
    result = plot("history", synthetic_model_path, tmp_path / "h.png", synthetic_data_dir)
    assert_one_line_error(result, 'pip install "mlknobs[plot]"')
    assert not (tmp_path / "h.png").exists()


def test_most_confident_mistakes_come_first():
    probabilities = np.array([[0.9, 0.1, 0.0],      # right
                              [0.2, 0.7, 0.1],      # wrong, 0.7 sure
                              [0.05, 0.0, 0.95],    # wrong, 0.95 sure
                              [0.4, 0.6, 0.0]])     # wrong, 0.6 sure
    labels = np.array([0, 0, 1, 0])
    assert most_confident_mistakes(probabilities, labels).tolist() == [2, 1, 3]


# --- snapshots ------------------------------------------------------------------------------------

def snapshot_train_args(data_dir, tmp_path, *extra):
    return ["train", "--epochs", "1", "--hidden-size", "16", "--lr", "0.5", "--data-dir", data_dir,
            "--out", tmp_path / "m.npz", "--snapshots", tmp_path / "learn.gif", *extra]


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.info.get("loop") == 0
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_train_snapshots_writes_an_animated_gif(synthetic_data_dir, tmp_path):
    result = run(*snapshot_train_args(synthetic_data_dir, tmp_path))
    assert result.exit_code == 0, result.output
    frames = gif_frames(tmp_path / "learn.gif")
    assert len(frames) == 1 + FRAMES_PER_EPOCH           # the initial weights, then 6 in the one epoch
    assert f"wrote {tmp_path / 'learn.gif'} ({len(frames)} frames)" in result.stderr
    assert not np.array_equal(frames[0], frames[-1])
    assert not np.array_equal(frames[-2], frames[-1])    # copies, not views of the weights updated in place
    assert load_model(tmp_path / "m.npz").config.hidden_size == 16


def test_train_snapshots_refuses_an_unwritable_path_before_training(synthetic_data_dir, tmp_path):
    args = snapshot_train_args(synthetic_data_dir, tmp_path)
    args[args.index("--snapshots") + 1] = tmp_path / "missing" / "learn.gif"
    assert_one_line_error(run(*args), "cannot write", "missing")
    assert not (tmp_path / "m.npz").exists()


def test_interrupted_training_keeps_its_frames_and_a_resumed_run_starts_where_it_stopped(
        synthetic_data_dir, tmp_path, monkeypatch):
    record = WeightSnapshots.record
    stop_at_frames = [1 + FRAMES_PER_EPOCH + 2]          # two frames into the second epoch

    def interrupt(self, progress):
        record(self, progress)
        if stop_at_frames and len(self.frames) == stop_at_frames[0]:
            stop_at_frames.clear()
            raise KeyboardInterrupt

    monkeypatch.setattr(WeightSnapshots, "record", interrupt)
    args = [*snapshot_train_args(synthetic_data_dir, tmp_path, "--quiet"), "--epochs", "2"]   # the last --epochs wins
    result = run(*args)
    assert result.exit_code == 130, result.output
    assert len(gif_frames(tmp_path / "learn.gif")) == 1 + FRAMES_PER_EPOCH + 2

    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    # The checkpoint holds epoch 1, so the new animation is its weights plus the frames of epoch 2.
    assert len(gif_frames(tmp_path / "learn.gif")) == 1 + FRAMES_PER_EPOCH


def test_the_first_frame_holds_the_weights_fit_starts_from():
    config = TrainConfig(epochs=1, hidden_size=8, batch_size=20, momentum=0, seed=3)
    rng = np.random.default_rng(0)
    data = Split(rng.integers(0, 256, (60, 784), dtype=np.uint8), (np.arange(60) % 10).astype(np.uint8))
    snapshots = WeightSnapshots(config.epochs)
    fit(config, data, data, [str(d) for d in range(10)], callback=snapshots.record)
    initial = Params.initial(8, np.random.default_rng(3))     # fit's first draw from Generator(seed)
    np.testing.assert_array_equal(snapshots.frames[0], initial.w1)
    assert snapshots.captions[0] == "initial random weights" and len(snapshots.frames) == 1 + 3


def test_frames_are_evenly_spaced_and_end_each_epoch():
    snapshots = WeightSnapshots(epochs=2, start_weights=np.zeros((784, 4), np.float32), start_label="start",
                                frames_per_epoch=4)
    assert sorted(snapshots.snapshot_batches(100)) == [24, 49, 74, 99]
    assert sorted(snapshots.snapshot_batches(3)) == [0, 1, 2]     # fewer batches than frames: every one
    params = Params.initial(4, np.random.default_rng(0))
    params.w1[:] = 0
    for epoch in range(2):
        for batch in range(100):
            params.w1 += 1.0                             # fit updates the weights in place
            snapshots.record(step(epoch + 1, 2, batch + 1, 100, params))
    assert len(snapshots.frames) == 1 + 2 * 4
    assert snapshots.captions[-1] == "epoch 2/2, batch 100/100" and snapshots.progress[-1] == 1.0
    assert [float(frame[0, 0]) for frame in snapshots.frames] == [0, 25, 50, 75, 100, 125, 150, 175, 200]


def step(epoch: int, epochs: int, batch: int, batches: int, params: Params) -> Progress:
    return Progress("step", epoch, epochs, batch, batches, 0.1, 0.5, params)


def test_a_long_run_keeps_a_bounded_number_of_frames():
    epochs, batches = 1000, 3
    snapshots = WeightSnapshots(epochs=epochs)
    params = Params.initial(2, np.random.default_rng(0))
    snapshots.record(Progress("start", 1, epochs, 0, batches, float("nan"), 0.5, params))
    for epoch in range(1, epochs + 1):
        for batch in range(1, batches + 1):
            snapshots.record(step(epoch, epochs, batch, batches, params))
    assert 100 <= len(snapshots.frames) <= 1 + MAX_FRAMES
    assert snapshots.captions[-1] == f"epoch {epochs}/{epochs}, batch {batches}/{batches}"


def test_large_layers_record_only_the_first_units():
    snapshots = WeightSnapshots(epochs=1, start_weights=np.ones((784, 800), np.float32), start_label="start")
    assert snapshots.frames[0].shape == (784, 64)
    with Image.open(io.BytesIO(snapshots.gif_bytes())) as gif:
        assert gif.n_frames == 1 and gif.size[0] >= 600   # 8 x 8 tiles of 84 px


def test_plot_augment_shows_the_models_own_distortions(synthetic_data_dir, tmp_path, monkeypatch):
    captured = {}
    real = plots.augment_figure

    def spy(images, settings, source, **kwargs):
        captured.update(settings=settings, source=source)
        return real(images, settings, source, **kwargs)

    monkeypatch.setitem(plots.DRAW, "augment",
                        lambda r: spy(r.train.images, r.distortions, r.distortions_source, fmt=r.fmt))
    model = tmp_path / "rotated.npz"
    trained = run("train", "--epochs", "1", "--hidden-size", "8", "--rotate", "20", "--data-dir", synthetic_data_dir,
                  "--out", model, "--quiet")
    assert trained.exit_code == 0, trained.output
    assert plot("augment", model, tmp_path / "a.png", synthetic_data_dir).exit_code == 0
    assert captured["settings"]["rotate"] == 20 and captured["settings"]["elastic"] == 0
    assert "rotated.npz's settings" in captured["source"]
