"""ONNX export: the graph computes what mlknobs computes (random models here, real ones at the end),
the file passes the checker and says what it holds, and failures are the usual typed errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest

from clirun import run
from mlknobs.config import LOSS_NAMES, TrainConfig
from mlknobs.data import datasets
from mlknobs.data.splits import load_split
from mlknobs.errors import MissingExtra, OutputError
from mlknobs.io.export import (
    OPSET,
    compare_with_onnxruntime,
    comparison_pixels,
    export_onnx,
    save_onnx,
    to_onnx,
)
from mlknobs.io.modelfile import load_model
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import InputScaling, Model, Params

HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_RUNTIME = importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs the export extra (onnx)")
needs_runtime = pytest.mark.skipif(not (HAVE_ONNX and HAVE_RUNTIME), reason="needs the export extra (onnxruntime)")
TOLERANCE = 1e-5     # the largest absolute difference in any probability we accept


def random_model(loss: str, hidden: int = 24, gain: float = 3.0, seed: int = 0, results=None) -> Model:
    """Glorot weights scaled by `gain` and random biases: confident, varied outputs, not a flat 0.1."""
    rng = np.random.default_rng(seed)
    p = Params.initial(hidden, rng)
    params = Params(w1=p.w1 * gain, b1=rng.normal(0, gain, hidden).astype(np.float32),
                    w2=p.w2 * gain, b2=rng.normal(0, 0.5, 10).astype(np.float32))
    return Model(params, TrainConfig(hidden_size=hidden, loss=loss), InputScaling(0.1307, 0.3081),
                 [f"class {k}" for k in range(10)],
                 results={"test_accuracy": 0.9123} if results is None else results)


def random_pixels(n: int = 1000, seed: int = 1) -> np.ndarray:
    """Random uint8 images, plus a blank one and a fully inked one."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 784), dtype=np.uint8)
    pixels[0], pixels[1] = 0, 255
    return pixels


def run_onnx(proto, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(session.run(["probabilities", "label"], {"pixels": pixels.astype(np.float32)}))


# --- the same numbers --------------------------------------------------------------------------------

@needs_runtime
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_a_random_model_gives_mlknobs_probabilities_and_labels(loss):
    model, pixels = random_model(loss), random_pixels()
    max_abs_diff, labels_agree = compare_with_onnxruntime(model, to_onnx(model), pixels)
    assert max_abs_diff < TOLERANCE
    assert labels_agree == 1.0
    probabilities, labels = run_onnx(to_onnx(model), pixels)
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(pixels), 10)
    assert labels.dtype == np.int64 and labels.shape == (len(pixels),)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)    # softmax, or sigmoid / row sum
    assert len(set(labels.tolist())) > 1                                  # the outputs are not flat


@needs_runtime
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_saturated_units_change_labels_only_at_float_ties(loss):
    """Weights 8x too large saturate many sigmoids. mlknobs' sigmoid (1 + tanh(z/2)) / 2 and the
    logistic of ONNX round differently near 1, so two outputs within a float32 step of each other
    may swap places; wherever the top two differ by more than that, the labels are the same."""
    model, pixels = random_model(loss, gain=8.0), random_pixels(2000)
    _, labels = run_onnx(to_onnx(model), pixels)
    ours = model.predict_proba(pixels)
    top_two = np.sort(ours, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 1e-6
    assert clear.sum() > 1000                  # mse: a third are ties, several outputs at exactly 1.0
    np.testing.assert_array_equal(labels[clear], ours.argmax(axis=1)[clear])


# --- the graph and the file ---------------------------------------------------------------------------

# What each output activation of the LOSSES table becomes after the second Gemm.
OUTPUT_OPS = {"softmax": ["Softmax"], "sigmoid": ["Sigmoid", "ReduceSum", "Max", "Div"]}


@needs_onnx
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_the_graph_is_scaling_gemm_sigmoid_gemm_output_argmax(loss):
    proto = to_onnx(random_model(loss))
    ops = [node.op_type for node in proto.graph.node]
    assert ops == ["Mul", "Add", "Gemm", "Sigmoid", "Gemm", *OUTPUT_OPS[LOSSES[loss].output_activation], "ArgMax"]
    initializers = {t.name: t for t in proto.graph.initializer}
    assert list(initializers["w1"].dims) == [784, 24] and list(initializers["w2"].dims) == [24, 10]


@needs_onnx
def test_the_file_passes_the_checker_with_a_dynamic_batch(tmp_path):
    import onnx

    path = tmp_path / "model.onnx"
    returned = save_onnx(random_model("cross-entropy"), path)
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded == returned
    assert [(o.domain, o.version) for o in loaded.opset_import] == [("", OPSET)] and OPSET >= 17
    (pixels,) = loaded.graph.input
    assert pixels.name == "pixels" and pixels.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in pixels.type.tensor_type.shape.dim] == ["N", 784]
    assert [o.name for o in loaded.graph.output] == ["probabilities", "label"]
    assert loaded.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert not list(tmp_path.glob(".*.tmp"))                               # written atomically


@needs_onnx
def test_metadata_says_what_the_file_holds():
    model = random_model("mse")
    proto = to_onnx(model)
    props = {p.key: p.value for p in proto.metadata_props}
    from mlknobs import __version__

    assert props["mlknobs_version"] == __version__
    assert props["dataset"] == "mnist" and props["loss"] == "mse"
    assert json.loads(props["class_names"]) == model.class_names
    assert float(props["test_accuracy"]) == 0.9123
    assert "0-255" in props["input"] and "black" in props["input"]
    assert json.loads(props["input_scaling"])["scale"] == pytest.approx(model.scaling.scale)
    assert proto.producer_name == "mlknobs" and proto.producer_version == __version__
    assert "mlknobs" in proto.doc_string and "Sigmoid" in proto.doc_string


@needs_onnx
def test_a_model_without_a_test_accuracy_records_none():
    props = {p.key for p in to_onnx(random_model("cross-entropy", results={})).metadata_props}
    assert "test_accuracy" not in props and "class_names" in props


# --- failures ------------------------------------------------------------------------------------------

def test_without_onnx_the_export_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)          # import onnx -> ImportError
    with pytest.raises(MissingExtra) as caught:
        save_onnx(random_model("cross-entropy"), tmp_path / "m.onnx")
    assert (caught.value.feature, caught.value.extra, caught.value.module) == ("mlknobs export", "export", "onnx")
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
def test_without_onnxruntime_the_file_is_written_and_not_compared(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = export_onnx(random_model("cross-entropy"), tmp_path / "m.onnx", data_dir=tmp_path / "nowhere")
    assert (tmp_path / "m.onnx").is_file()
    assert report.max_abs_diff is None and report.labels_agree is None
    assert report.missing_runtime is not None and report.missing_runtime.module == "onnxruntime"
    assert not (tmp_path / "nowhere").exists()             # no dataset loaded for nothing


@needs_onnx
def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    model = random_model("cross-entropy")
    with pytest.raises(OutputError, match="does not exist"):
        save_onnx(model, tmp_path / "missing" / "m.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        save_onnx(model, tmp_path / "folder.onnx")


# --- the comparison data ---------------------------------------------------------------------------------

@needs_runtime
def test_export_compares_on_the_models_test_images(synthetic_data_dir, tmp_path):
    report = export_onnx(random_model("mse"), tmp_path / "m.onnx", check_images=500, data_dir=synthetic_data_dir,
                         progress=False)
    assert report.compared_on == "mnist test images" and report.images_compared == 500
    assert report.max_abs_diff < TOLERANCE and report.labels_agree == 1.0 and report.data_problem is None


@needs_runtime
def test_a_dataset_that_cannot_be_loaded_falls_back_to_random_pixels(monkeypatch, tmp_path):
    offline = dataclasses.replace(datasets.DATASETS["mnist"], mirrors=())     # nothing to download from
    monkeypatch.setitem(datasets.DATASETS, "mnist", offline)
    pixels, problem = comparison_pixels("mnist", 300, tmp_path / "empty", progress=False)
    assert pixels.shape == (300, 784) and pixels.dtype == np.uint8 and problem
    report = export_onnx(random_model("cross-entropy"), tmp_path / "m.onnx", check_images=300,
                         data_dir=tmp_path / "empty", progress=False)
    assert report.compared_on == "random-pixel images" and report.data_problem
    assert report.max_abs_diff < TOLERANCE and report.labels_agree == 1.0


@needs_onnx
def test_no_check_images_means_no_comparison(tmp_path):
    report = export_onnx(random_model("cross-entropy"), tmp_path / "m.onnx", check_images=0,
                         data_dir=tmp_path / "nowhere")
    assert report.max_abs_diff is None and report.compared_on is None and report.missing_runtime is None
    assert not (tmp_path / "nowhere").exists()


# --- real models, the whole test set ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_models(small_model_path, mnist_data_dir, shared_data, tmp_path_factory) -> dict:
    """A cross-entropy and an mse MNIST model and a Fashion-MNIST model (H=32, 1 epoch each)."""
    folder = tmp_path_factory.mktemp("export-models")
    fashion_data = folder / "data"          # not the session's MNIST data dir: that one stays as it is
    paths = {"cross-entropy": small_model_path, "mse": folder / "mse.npz", "fashion-mnist": folder / "fashion.npz"}
    for name, extra, data_dir in (("mse", ["--loss", "mse"], mnist_data_dir),
                                  ("fashion-mnist", ["--dataset", "fashion-mnist"], fashion_data)):
        result = run("train", "--epochs", "1", "--hidden-size", "32", "--lr", "0.5", *extra,
                     "--data-dir", data_dir, "--mirror", shared_data, "--out", paths[name], "--quiet")
        assert result.exit_code == 0, result.output
    return {name: (path, fashion_data if name == "fashion-mnist" else mnist_data_dir) for name, path in paths.items()}


@needs_runtime
@pytest.mark.real_data
@pytest.mark.parametrize("name", ["cross-entropy", "mse", "fashion-mnist"])
def test_real_models_match_on_the_whole_test_set(real_models, shared_data, name):
    path, data_dir = real_models[name]
    model = load_model(path)
    test = load_split(model.dataset, "test", data_dir, [str(shared_data)], progress=False)
    proto = to_onnx(model)
    max_abs_diff, labels_agree = compare_with_onnxruntime(model, proto, test.images)
    assert max_abs_diff < TOLERANCE, f"{name}: max abs diff {max_abs_diff:.3g}"
    assert labels_agree == 1.0
    _, labels = run_onnx(proto, test.images)
    accuracy = float(np.mean(labels == test.labels))
    assert accuracy == pytest.approx(model.results["test_accuracy"], abs=1e-12)    # what the file says
    assert float({p.key: p.value for p in proto.metadata_props}["test_accuracy"]) == model.results["test_accuracy"]
