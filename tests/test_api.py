"""The Python API (mlknobs/__init__.py, mlknobs/api/, viz/summary.py): the public names, the types
they return, training in memory on the synthetic digits, predicting on arrays and pictures, typed
errors, the HTML summary, and the README's first Python example run as it stands."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlknobs
from mlknobs.api.data import Dataset
from mlknobs.data import datasets
from mlknobs.nn.model import Model, Params

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def data(synthetic_splits) -> Dataset:
    train, test = synthetic_splits
    return Dataset("mnist", train, test, tuple(str(d) for d in range(10)))


@pytest.fixture(scope="module")
def model(data) -> Model:
    return mlknobs.train(data, hidden_size=16, epochs=1)


# --- the names --------------------------------------------------------------------------------------------

def test_every_public_name_exists_is_documented_and_listed_once():
    names = [name for name in mlknobs.__all__ if name != "__version__"]
    assert len(names) == len(set(names)) and sorted(names) == sorted(mlknobs._EXPORTS)
    for name in names:
        value = getattr(mlknobs, name)
        doc = (value.__doc__ or "").strip()
        # A dataclass without a docstring gets its signature as one: that is not documentation.
        assert doc and not doc.startswith(f"{name}("), f"mlknobs.{name} has no docstring"
    assert set(names) <= set(dir(mlknobs))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        mlknobs.nonsense    # noqa: B018


def test_public_names_are_the_librarys_own_objects():
    from mlknobs.config import TrainConfig
    from mlknobs.errors import MlknobsError
    from mlknobs.nn import plain

    assert mlknobs.TrainConfig is TrainConfig and mlknobs.MlknobsError is MlknobsError
    assert mlknobs.plain is plain and mlknobs.Model is Model and mlknobs.Params is Params
    for error in ("SettingsError", "InputError", "TrainingDiverged", "TrainingInterrupted", "DownloadError",
                  "ModelFileError", "ImageError", "KnobError"):
        assert issubclass(getattr(mlknobs, error), MlknobsError)


def test_importing_the_package_imports_none_of_the_library():
    code = ("import sys, mlknobs; print(sorted(m for m in sys.modules if m in ('numpy', 'click', 'typing') "
            "or m.startswith('mlknobs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys, mlknobs; mlknobs.train; print('mlknobs.api.training' in sys.modules, 'train' in vars(mlknobs))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_a_name_loads_only_its_own_part_of_the_api():
    code = ("import sys, mlknobs; mlknobs.predict; "
            "print(sorted(m for m in sys.modules if m.startswith(('mlknobs.api', 'mlknobs.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mlknobs.api', 'mlknobs.api.data', 'mlknobs.api.models']"


# --- data -------------------------------------------------------------------------------------------------

def test_load_dataset_reads_the_mirror_from_the_environment(synthetic_mnist, tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.DATASETS, "mnist", synthetic_mnist.spec)
    monkeypatch.setenv("MLKNOBS_MIRROR", f"{tmp_path / 'missing'}  {synthetic_mnist.mirror}")
    data = mlknobs.load_dataset("mnist", data_dir=tmp_path / "data")
    assert isinstance(data, mlknobs.Dataset) and data.name == "mnist"
    assert data.train.images.dtype == np.uint8 and data.train.images.shape == (10_000, 784)
    assert data.test.labels.shape == (2_000,) and data.class_names == tuple("0123456789")
    np.testing.assert_array_equal(data.test.images, synthetic_mnist.test.images)
    assert (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert "10,000 training and 2,000 test images" in repr(data)


def test_load_dataset_refuses_an_unknown_name_with_a_typed_error(tmp_path):
    with pytest.raises(mlknobs.SettingsError, match="dataset must be one of mnist, fashion-mnist"):
        mlknobs.load_dataset("cifar", data_dir=tmp_path)


def test_a_missing_mirror_is_a_download_error(tmp_path):
    with pytest.raises(mlknobs.DownloadError):
        mlknobs.load_dataset("mnist", data_dir=tmp_path / "data", mirrors=[str(tmp_path / "empty")])


def test_subset_takes_the_first_samples(data):
    small = data.subset(train=100, test=30)
    assert (len(small.train), len(small.test)) == (100, 30)
    np.testing.assert_array_equal(small.train.images, data.train.images[:100])
    assert len(data.subset(test=5).train) == len(data.train)
    with pytest.raises(mlknobs.InputError, match="train must be a whole number >= 1"):
        data.subset(train=0)


# --- training ---------------------------------------------------------------------------------------------

def test_train_in_memory_learns_and_writes_no_files(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = mlknobs.train(data.subset(train=3000), hidden_size=16, epochs=2, learning_rate=0.5)
    assert isinstance(model, mlknobs.Model)
    assert model.config.hidden_size == 16 and model.config.epochs == 2 and model.dataset == "mnist"
    assert [entry["epoch"] for entry in model.history] == [1, 2]
    assert model.results["test_accuracy"] > 0.8
    assert model.params.w1.shape == (784, 16)
    assert list(tmp_path.iterdir()) == []


def test_keyword_settings_go_on_top_of_a_config(data):
    config = mlknobs.TrainConfig(hidden_size=8, epochs=1, seed=3, loss="mse", learning_rate=2.0)
    model = mlknobs.train(data.subset(train=500), config, seed=5)
    assert (model.config.hidden_size, model.config.loss, model.config.seed) == (8, "mse", 5)


def test_bad_settings_are_settings_errors(data):
    with pytest.raises(mlknobs.SettingsError, match="unknown training settings: hiden_size"):
        mlknobs.train(data, hiden_size=16)
    with pytest.raises(mlknobs.SettingsError, match="hidden_size must be"):
        mlknobs.train(data, hidden_size=0)
    with pytest.raises(mlknobs.SettingsError, match="'fashion-mnist' differs from the data's, 'mnist'"):
        mlknobs.train(data, dataset="fashion-mnist")


def test_the_data_names_the_dataset_a_model_records(data):
    other = Dataset("fashion-mnist", data.train, data.test, data.class_names).subset(train=300, test=50)
    model = mlknobs.train(other, mlknobs.TrainConfig(hidden_size=4, epochs=1))     # the config's default: mnist
    assert model.dataset == "fashion-mnist"


def test_negative_or_too_large_labels_are_refused_before_training(data):
    for bad in (-1, 10):
        labels = data.train.labels.astype(np.int64)
        labels[5] = bad
        wrong = Dataset("mnist", type(data.train)(data.train.images, labels), data.test, data.class_names)
        with pytest.raises(mlknobs.InputError, match=rf"data.train.labels must be classes 0 to 9, not "
                                                     rf"{min(bad, 0)}..{max(bad, 9)}") as refused:
            mlknobs.train(wrong, hidden_size=4, epochs=1)
        assert refused.value.name == "train.labels"
    with pytest.raises(mlknobs.InputError, match="labels must be classes 0 to 9, not -1..3"):
        mlknobs.fresh_model(Dataset("mnist", data.train, type(data.test)(data.test.images[:2], np.array([3, -1])),
                                    data.class_names))


def test_train_refuses_data_that_is_not_a_dataset_of_uint8_images(data):
    with pytest.raises(mlknobs.InputError, match="must be a mlknobs.Dataset"):
        mlknobs.train((data.train.images, data.train.labels))
    floats = Dataset("mnist", type(data.train)(data.train.images / 255.0, data.train.labels), data.test,
                     data.class_names)
    with pytest.raises(mlknobs.InputError, match=r"data.train.images must be a uint8 array \(N, 784\)"):
        mlknobs.train(floats)


def test_the_callback_hears_every_event_and_the_progress_bar_goes_to_stderr(data, capsys):
    events = []
    mlknobs.train(data.subset(train=1000), hidden_size=8, epochs=2, batch_size=250,
                  callback=lambda p: events.append((p.event, p.epoch, p.batch)), progress=True)
    assert events[0] == ("start", 1, 0)
    assert [e for e in events if e[0] == "epoch"] == [("epoch", 1, 4), ("epoch", 2, 4)]
    assert sum(e[0] == "step" for e in events) == 8
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch 2/2" in captured.err and "8/8" in captured.err


def test_a_callback_that_returns_true_stops_the_run_with_a_typed_error(data):
    def stop_in_epoch_two(progress):
        return progress.event == "step" and progress.epoch == 2

    with pytest.raises(mlknobs.TrainingInterrupted, match="after 1 of 3 epochs; training in memory") as stopped:
        mlknobs.train(data.subset(train=500), hidden_size=8, epochs=3, callback=stop_in_epoch_two)
    assert stopped.value.epochs_done == 1 and stopped.value.checkpoint is None


def test_fresh_model_is_the_network_a_run_starts_from(data):
    settings = {"hidden_size": 8, "seed": 3, "epochs": 1, "train_size": 2000, "val_size": 500}   # fitted on 1,500
    fresh = mlknobs.fresh_model(data, **settings)
    assert fresh.history == [] and fresh.results == {}
    started = {}

    def keep_start(progress):
        if progress.event == "start":
            started.update({name: getattr(progress.params, name).copy() for name in ("w1", "b1", "w2", "b2")})

    trained = mlknobs.train(data.subset(test=50), callback=keep_start, **settings)
    for name in started:
        np.testing.assert_array_equal(started[name], getattr(fresh.params, name), err_msg=name)
    assert fresh.scaling == trained.scaling != mlknobs.fresh_model(data, hidden_size=8, seed=3).scaling
    assert fresh.config == trained.config


def test_fresh_model_checks_its_data_and_settings_as_train_does(data):
    with pytest.raises(mlknobs.SettingsError, match="unknown training settings: hiden_size"):
        mlknobs.fresh_model(data, hiden_size=8)
    with pytest.raises(mlknobs.InputError, match="must be a mlknobs.Dataset"):
        mlknobs.fresh_model((data.train.images, data.train.labels))


def test_training_from_an_initial_model_keeps_its_input_scaling(data, model):
    further = mlknobs.train(data.subset(train=500), hidden_size=16, epochs=1, initial=model)
    assert further.scaling == model.scaling
    with pytest.raises(mlknobs.SettingsError, match="hidden_size"):
        mlknobs.train(data.subset(train=500), hidden_size=8, epochs=1, initial=model)


def test_train_and_save_writes_the_model_as_the_cli_does(synthetic_data_dir, tmp_path):
    out = tmp_path / "model.npz"
    model = mlknobs.train_and_save(out, hidden_size=8, epochs=1, data_dir=synthetic_data_dir, mirrors=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]     # the checkpoint is gone
    loaded = mlknobs.load_model(out)
    np.testing.assert_array_equal(loaded.params.w1, model.params.w1)
    assert loaded.results["test_accuracy"] == model.results["test_accuracy"]
    with pytest.raises(mlknobs.SettingsError, match="give no config"):
        mlknobs.train_and_save(out, mlknobs.TrainConfig(), resume=True)
    with pytest.raises(mlknobs.SettingsError, match="unknown training settings: hiden_size"):
        mlknobs.train_and_save(out, resume=True, hiden_size=8)


# --- model files ------------------------------------------------------------------------------------------

def test_save_and_load_round_trip(model, tmp_path):
    path = tmp_path / "m.npz"
    mlknobs.save_model(path, model)
    loaded = mlknobs.load_model(str(path))
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(getattr(loaded.params, name), getattr(model.params, name))
    assert loaded.config == model.config and loaded.scaling == model.scaling and loaded.history == model.history


def test_model_file_errors_are_typed(model, tmp_path):
    with pytest.raises(mlknobs.ModelFileError, match="no model file at"):
        mlknobs.load_model(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(mlknobs.ModelFileError):
        mlknobs.load_model(tmp_path / "junk.npz")
    with pytest.raises(mlknobs.InputError, match="model must be a mlknobs.Model"):
        mlknobs.save_model(tmp_path / "m.npz", model.params)


# --- predicting -------------------------------------------------------------------------------------------

def test_predict_on_arrays_of_every_accepted_shape(model, data):
    images = data.test.images[:50]
    expected = np.argmax(model.predict_proba(images), axis=1)
    np.testing.assert_array_equal(mlknobs.predict(model, images), expected)
    np.testing.assert_array_equal(mlknobs.predict(model, images.reshape(50, 28, 28)), expected)
    np.testing.assert_array_equal(mlknobs.predict(model, images.astype(np.int64)), expected)
    one = mlknobs.predict(model, images[3].reshape(28, 28))
    assert isinstance(one, int) and one == expected[3] == mlknobs.predict(model, images[3].tolist())
    probabilities = mlknobs.predict_proba(model, images[:4])
    assert probabilities.shape == (4, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert mlknobs.predict_proba(model, images[0]).shape == (10,)
    assert mlknobs.predict(model, images[:0]).shape == (0,)


def test_predict_refuses_unusable_arrays_with_input_errors(model):
    cases = {"not 0.5 values": np.full(784, 0.5), "not true/false": np.ones(784, bool),
             r"not an array of shape \(3, 10\)": np.zeros((3, 10), np.uint8),
             r"pixels must be 0..255, not -1..300": np.array([-1, 300] * 392)}
    for message, images in cases.items():
        with pytest.raises(mlknobs.InputError, match=message.replace("not 0.5 values", "not float64 values")):
            mlknobs.predict(model, images)


def test_predict_on_a_picture_file_and_its_bytes(model, data, tmp_path):
    digit = data.test.images[7]
    path = tmp_path / "digit.png"
    Image.fromarray(digit.reshape(28, 28)).save(path)
    expected = mlknobs.predict(model, digit)
    assert mlknobs.predict(model, path) == mlknobs.predict(model, str(path)) == expected
    assert mlknobs.predict(model, path.read_bytes()) == expected
    np.testing.assert_array_equal(mlknobs.read_picture(path), digit)      # an MNIST-like input passes unchanged
    (tmp_path / "text.png").write_text("no picture")
    with pytest.raises(mlknobs.ImageError):
        mlknobs.predict(model, tmp_path / "text.png")


def test_evaluate_agrees_with_predict(model, data):
    result = mlknobs.evaluate(model, data.test.images, data.test.labels)
    assert result.accuracy == pytest.approx(np.mean(mlknobs.predict(model, data.test.images) == data.test.labels))
    assert result.accuracy == pytest.approx(model.results["test_accuracy"])
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == len(data.test)
    with pytest.raises(mlknobs.InputError, match="labels must be classes 0 to 9"):
        mlknobs.evaluate(model, data.test.images[:2], [3, 10])
    with pytest.raises(mlknobs.InputError, match="labels must be classes 0 to 9, not -1..3"):
        mlknobs.evaluate(model, data.test.images[:2], [3, -1])
    with pytest.raises(mlknobs.InputError, match="labels must be 2 whole numbers"):
        mlknobs.evaluate(model, data.test.images[:2], [3])


# --- looking inside ---------------------------------------------------------------------------------------

def test_explain_walks_one_step_and_the_slopes_agree(model, data):
    e = mlknobs.explain(model, data.test.images[0], int(data.test.labels[0]), knob="w2[3,7]", learning_rate=0.1)
    assert e.knob.name == "w2[3,7]" and e.knob.relative_difference < 1e-6
    assert e.step.learning_rate == 0.1 and e.step.loss_after < e.step.loss_before
    assert e.slopes.w1.shape == (784, 16) and e.probabilities.shape == (10,)
    default = mlknobs.explain(model, data.test.images[0].reshape(28, 28), 3)
    assert default.knob.knob.array == "w1" and default.step.learning_rate == model.config.learning_rate


def test_explain_refuses_what_it_cannot_use(model, data):
    image = data.test.images[0]
    with pytest.raises(mlknobs.KnobError, match="outside the network"):
        mlknobs.explain(model, image, 7, knob="w1[784,0]")
    with pytest.raises(mlknobs.InputError, match="label must be a class of the model, 0 to 9"):
        mlknobs.explain(model, image, 10)
    with pytest.raises(mlknobs.InputError, match="h must be a number > 0"):
        mlknobs.explain(model, image, 7, h=0.0)
    with pytest.raises(mlknobs.InputError, match="explain takes one image"):
        mlknobs.explain(model, data.test.images[:2], 7)


def test_gradcheck_passes_and_checks_its_arguments():
    result = mlknobs.gradcheck(loss="mse", hidden_size=4, batch_size=3)
    assert result.passed and set(result.max_relative_error) == {"w1", "b1", "w2", "b2"}
    with pytest.raises(mlknobs.SettingsError, match="loss must be one of"):
        mlknobs.gradcheck(loss="hinge")
    with pytest.raises(mlknobs.InputError, match="hidden_size must be a whole number from 1 to 256"):
        mlknobs.gradcheck(hidden_size=1000)


def test_the_plain_step_runs_a_learners_own_loop(data):
    rng = np.random.default_rng(0)
    params = mlknobs.Params.initial(16, rng, dtype=np.float64)
    x, labels = data.train.images[:500] / 255.0, data.train.labels[:500]
    losses = []
    for _ in range(30):
        params, loss, _ = mlknobs.plain.step(params, x, labels, learning_rate=1.0)
        losses.append(loss)
    assert losses[-1] < 0.7 * losses[0]


# --- the HTML summary -------------------------------------------------------------------------------------

def _png_in(summary: str) -> Image.Image:
    match = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", summary)
    assert match, "no inline PNG"
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_a_models_html_summary_shows_settings_accuracy_tiles_and_curves(model):
    summary = model._repr_html_()
    assert "784 &rarr; 16 &rarr; 10" in summary and "hidden_size=16" in summary
    assert f"test accuracy {model.results['test_accuracy']:.2%}" in summary
    tiles = _png_in(summary)
    assert tiles.size == (8 * 56 + 7 * 2, 2 * 56 + 2)           # 16 tiles of 28x28 doubled, in 8 columns
    assert summary.count("<svg") == 2 and "loss (cross-entropy)" in summary


def test_the_summary_of_a_fresh_model_says_it_is_untrained(data):
    summary = mlknobs.fresh_model(data, hidden_size=3)._repr_html_()
    assert "untrained" in summary and "<svg" not in summary
    assert _png_in(summary).size == (3 * 56 + 2 * 2, 56)


def test_the_summary_escapes_what_comes_from_files(model):
    hostile = Model(model.params, model.config, model.scaling, model.class_names, model.history, model.results,
                    parent={"path": "<script>alert(1)</script>.npz"})
    summary = hostile._repr_html_()
    assert "<script>" not in summary and "&lt;script&gt;" in summary


def test_the_summary_needs_no_matplotlib_and_is_text_without_pillow(model, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)           # import matplotlib now fails
    assert "data:image/png" in model._repr_html_()
    monkeypatch.setitem(sys.modules, "PIL", None)
    text_only = model._repr_html_()
    assert "data:image/png" not in text_only and "test accuracy" in text_only and "<svg" in text_only


# --- the README -------------------------------------------------------------------------------------------

def first_python_block(readme: str) -> str:
    match = re.search(r"^```python\n(.*?)^```", readme, re.S | re.M)
    assert match, "README.md has no ```python block"
    return match.group(1)


@pytest.mark.real_data
def test_the_readmes_first_python_example_runs_as_it_stands(shared_data, tmp_path):
    """The README's first Python example, exactly as written (small settings: a second of training),
    in a fresh process on real MNIST through the mirror; it prints the test accuracy it states."""
    readme = README.read_text()
    code = first_python_block(readme)
    env = {**os.environ, "MLKNOBS_MIRROR": str(shared_data), "MLKNOBS_DATA_DIR": str(tmp_path / "data"),
           "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    printed = re.search(r"test accuracy (\d+\.\d+)%", result.stdout)
    assert printed, result.stdout
    stated = re.search(r"# test accuracy (\d+\.\d+)%", code)
    assert stated and abs(float(printed.group(1)) - float(stated.group(1))) < 0.5, (printed.group(0), code)
    assert (tmp_path / "model.npz").is_file()
