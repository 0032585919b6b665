"""A model as an ONNX file: the same network, usable from any ONNX runtime without mlknobs.

The graph takes raw pixels and holds everything `mlknobs predict` does after the picture has been
made MNIST-like (that part, vision/images.py, stays outside: it is picture handling, not math):

    x     = pixels * scale + offset    (N, 784)                the input scaling (InputScaling)
    z1    = x  @ w1 + b1               (N, 784) @ (784, H) -> (N, H)      Gemm
    a1    = sigmoid(z1)                                                   Sigmoid
    z2    = a1 @ w2 + b2               (N, H) @ (H, 10)    -> (N, 10)     Gemm
    probabilities = output(z2)         (N, 10)   softmax, or sigmoid normalised by its row sum
    label = argmax(probabilities)      (N,) int64

Which output form a model gets comes from its loss's output activation (nn.losses.LOSSES), through
the OUTPUT_NODES table below.

Two numerical details of mlknobs' activations (nn/activations.py) are not copied into the graph:
the sigmoid computed as (1 + tanh(z/2)) / 2, which rounds to exactly 0 or 1 beyond |z| ~ 17 where
the logistic is within 4e-8 of them, and the softmax's floor of -30 on the shifted logits, which
only lifts probabilities below exp(-30) ~ 1e-13. Measured: writing them into the graph (Tanh, Max)
moved the largest difference from mlknobs by less than 1e-7. What remains, 1e-6 to 3e-6 on trained
models, is float32 rounding in the two matrix products, which each library sums in its own order.
Two corners follow from it: outputs of an mse model that saturate within one float32 step of each
other may be ranked differently (a tie in all but rounding), and a row whose ten outputs mlknobs
rounds to exactly 0 (every z2 below about -17) gets zeros there and the normalised logistic here.

`onnx` (and `onnxruntime`, for the comparison) come with the `export` extra; without them the
functions here raise MissingExtra.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlknobs import __version__
from mlknobs.errors import MissingExtra, MlknobsError, OutputError
from mlknobs.files import atomic_write, check_writable
from mlknobs.nn.losses import LOSSES
from mlknobs.nn.model import INPUT_SIZE, OUTPUT_SIZE, Model

if TYPE_CHECKING:
    import onnx

OPSET = 17                    # ai.onnx opset; 17 runs on every onnxruntime since 1.12
PRODUCER = "mlknobs"
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probabilities", "label")
BATCH = "N"                   # the symbolic batch dimension
FEATURE = "mlknobs export"
COMPARE_FEATURE = "comparing the ONNX file with mlknobs"
DEFAULT_CHECK_IMAGES = 2000


def _require(module: str, feature: str = FEATURE):
    """Import an optional module of the `export` extra, or raise MissingExtra naming it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(feature=feature, extra="export", module=module) from e


def input_convention(dataset: str) -> str:
    """The one sentence a user of the ONNX file needs about what to feed it."""
    return (f"{INPUT_NAME}: float32 (N, {INPUT_SIZE}), each row a 28x28 image row by row, raw pixel "
            f"values 0-255 in {dataset}'s convention: light ink (255) on a black background (0), "
            f"the object cropped, scaled to fit 20x20 and centred in 28x28 as `mlknobs predict` does; "
            f"the input scaling is inside the graph")


# --- the graph ----------------------------------------------------------------------------------------

def _softmax_nodes(helper, z2: str, out: str) -> tuple[list, list]:
    """probabilities = softmax(z2) along each row: (N, 10) -> (N, 10)."""
    return [helper.make_node("Softmax", [z2], [out], axis=1, name="softmax")], []


def _normalised_sigmoid_nodes(helper, z2: str, out: str) -> tuple[list, list]:
    """probabilities = a2 / max(sum_k a2_k, tiny) with a2 = sigmoid(z2), as Loss.probabilities_ does.

    mse models have ten independent sigmoid outputs; dividing by the row sum makes them read as
    probabilities without changing the argmax. The floor `tiny` only guards a row of exact zeros.
    """
    from onnx import numpy_helper

    constants = [numpy_helper.from_array(np.array([1], np.int64), "sum_axes"),
                 numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, np.float32), "tiny")]
    nodes = [
        helper.make_node("Sigmoid", [z2], ["a2"], name="output_sigmoid"),             # (N, 10)
        helper.make_node("ReduceSum", ["a2", "sum_axes"], ["a2_sum"], keepdims=1,     # (N, 10) -> (N, 1)
                         name="row_sum"),
        helper.make_node("Max", ["a2_sum", "tiny"], ["a2_total"], name="floor_sum"),  # (N, 1)
        helper.make_node("Div", ["a2", "a2_total"], [out], name="normalise"),         # (N, 10) / (N, 1)
    ]
    return nodes, constants


# Output activation (LOSSES[loss].output_activation) -> the nodes that turn z2 into probabilities.
OUTPUT_NODES: dict[str, Callable] = {
    "softmax": _softmax_nodes,
    "sigmoid": _normalised_sigmoid_nodes,
}


def metadata(model: Model) -> dict[str, str]:
    """What the ONNX file records about its model (metadata_props: strings only)."""
    props = {
        "mlknobs_version": __version__,
        "dataset": model.dataset,
        "class_names": json.dumps(list(model.class_names)),
        "input": input_convention(model.dataset),
        "loss": model.loss,
        "hidden_size": str(model.params.hidden_size),
        "input_scaling": json.dumps({"mean": model.scaling.mean, "std": model.scaling.std,
                                     "scale": model.scaling.scale, "offset": model.scaling.offset}),
    }
    if "test_accuracy" in model.results:
        props["test_accuracy"] = repr(float(model.results["test_accuracy"]))
    return props


def to_onnx(model: Model) -> onnx.ModelProto:
    """The model as an ONNX ModelProto (opset OPSET), built with onnx.helper; not yet checked."""
    _require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    output_activation = LOSSES[model.loss].output_activation
    if output_activation not in OUTPUT_NODES:
        raise ValueError(f"no ONNX form for the output activation {output_activation!r} "
                         f"(add it to OUTPUT_NODES in {__name__})")
    p, scaling, f32 = model.params, model.scaling, np.float32
    output_nodes, output_constants = OUTPUT_NODES[output_activation](helper, "z2", "probabilities")
    initializers = [
        numpy_helper.from_array(np.array(scaling.scale, f32), "scale"),      # ()
        numpy_helper.from_array(np.array(scaling.offset, f32), "offset"),    # ()
        numpy_helper.from_array(p.w1.astype(f32), "w1"),                     # (784, H)
        numpy_helper.from_array(p.b1.astype(f32), "b1"),                     # (H,)
        numpy_helper.from_array(p.w2.astype(f32), "w2"),                     # (H, 10)
        numpy_helper.from_array(p.b2.astype(f32), "b2"),                     # (10,)
        *output_constants,
    ]
    nodes = [
        helper.make_node("Mul", ["pixels", "scale"], ["scaled"], name="input_scale"),    # (N, 784) * ()
        helper.make_node("Add", ["scaled", "offset"], ["x"], name="input_offset"),       # x = pixel * scale + offset
        helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], name="hidden"),              # (N, 784) @ (784, H) + (H,)
        helper.make_node("Sigmoid", ["z1"], ["a1"], name="hidden_sigmoid"),              # (N, H)
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["z2"], name="output"),             # (N, H) @ (H, 10) + (10,)
        *output_nodes,                                                                   # (N, 10) probabilities
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0,     # (N,) int64; ties: the
                         name="label"),                                                  # first, like np.argmax
    ]
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH, INPUT_SIZE])]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [BATCH, OUTPUT_SIZE]),
               helper.make_tensor_value_info("label", TensorProto.INT64, [BATCH])]
    description = (f"mlknobs {model.params.hidden_size}-hidden-unit MLP trained on {model.dataset} "
                   f"({model.loss} loss): pixels -> input scaling -> Gemm -> Sigmoid -> Gemm -> "
                   f"{' -> '.join(node.op_type for node in output_nodes)} -> probabilities, "
                   f"ArgMax -> label. {input_convention(model.dataset)}.")
    graph = helper.make_graph(nodes, "mlknobs_mlp", inputs, outputs, initializers, doc_string=description)
    opsets = [helper.make_opsetid("", OPSET)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER, producer_version=__version__,
                              doc_string=description,
                              # the oldest IR version that carries this opset: older runtimes load it too
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(proto, metadata(model))
    return proto


def save_onnx(model: Model, path: Path) -> onnx.ModelProto:
    """Write `model` to `path` as a checked ONNX file (atomically); returns the ModelProto written."""
    onnx = _require("onnx")
    path = Path(path)
    check_writable(path)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)   # a failure here is a bug in to_onnx
    data = proto.SerializeToString()
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return proto


def describe_io(proto: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """The graph's inputs and outputs as [{"name", "type", "shape"}], symbolic dimensions by name."""
    from onnx import helper

    def one(value) -> dict:
        tensor = value.type.tensor_type
        shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "type": helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, "shape": shape}

    return [one(v) for v in proto.graph.input], [one(v) for v in proto.graph.output]


# --- checking the file against mlknobs ------------------------------------------------------------------

def compare_with_onnxruntime(model: Model, onnx_model: onnx.ModelProto | bytes | Path | str,
                             pixels: np.ndarray) -> tuple[float, float]:
    """Run the ONNX model in onnxruntime on uint8 images (N, 784) and compare it with mlknobs.

    Returns (max_abs_diff, labels_agree): the largest absolute difference between the ONNX file's
    probabilities and mlknobs' own (Model.predict_proba, what `predict` reports), and the share of
    images whose ONNX `label` equals mlknobs' argmax (1.0: all of them).
    """
    ort = _require("onnxruntime", COMPARE_FEATURE)
    if len(pixels) == 0:
        raise ValueError("no images to compare on")
    if not isinstance(onnx_model, (bytes, str, Path)):
        onnx_model = onnx_model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1          # a few thousand rows: one thread, cores stay free
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_model) if isinstance(onnx_model, Path) else onnx_model,
                                   options, providers=["CPUExecutionProvider"])
    onnx_probabilities, onnx_labels = session.run(list(OUTPUT_NAMES),
                                                  {INPUT_NAME: pixels.astype(np.float32)})   # (N, 10), (N,)
    ours = model.predict_proba(pixels)                                                      # (N, 10)
    max_abs_diff = float(np.abs(onnx_probabilities.astype(np.float64) - ours).max())
    labels_agree = float(np.mean(onnx_labels == ours.argmax(axis=1)))
    return max_abs_diff, labels_agree


def comparison_pixels(dataset: str, count: int, data_dir: Path | None = None, mirrors: Sequence[str] = (),
                      progress: bool | None = None, seed: int = 0) -> tuple[np.ndarray, str | None]:
    """The first `count` test images of `dataset` (uint8 (count, 784)), and None.

    If the dataset cannot be loaded (no copy, no reachable mirror, a damaged file), random pixels
    from a seeded generator instead, and why the dataset could not be used. Random pixels still
    check that the graph computes the same function, on harder inputs (more saturated units) than
    real digits; the caller says which it got.
    """
    from mlknobs.data.splits import load_split

    try:
        return load_split(dataset, "test", data_dir, mirrors, progress=progress).images[:count], None
    except (MlknobsError, OSError) as e:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, size=(count, INPUT_SIZE), dtype=np.uint8), str(e)


@dataclass(frozen=True)
class ExportReport:
    """What export_onnx did: the file, its interface, and how it compares with mlknobs."""

    out: Path
    opset: int
    inputs: list[dict]                     # [{"name", "type", "shape"}]
    outputs: list[dict]
    images_compared: int = 0
    compared_on: str | None = None         # "mnist test images", "random-pixel images"; None: not compared
    max_abs_diff: float | None = None      # None: not compared
    labels_agree: float | None = None
    missing_runtime: MissingExtra | None = None   # onnxruntime is not installed: not compared
    data_problem: str | None = None        # why the dataset was not used (then: random pixels)


def export_onnx(model: Model, out: Path, check_images: int = DEFAULT_CHECK_IMAGES, data_dir: Path | None = None,
                mirrors: Sequence[str] = (), progress: bool | None = None) -> ExportReport:
    """Write `model` to `out` as ONNX, then measure it in onnxruntime against mlknobs.

    The comparison runs on the first `check_images` test images of the model's dataset (random
    pixels if it cannot be loaded; none at all for 0), and is skipped, with missing_runtime set,
    when onnxruntime is not installed: the file is written either way.
    """
    proto = save_onnx(model, out)
    inputs, outputs = describe_io(proto)
    report = ExportReport(Path(out), OPSET, inputs, outputs)
    if check_images <= 0:
        return report
    try:
        _require("onnxruntime", COMPARE_FEATURE)
    except MissingExtra as e:
        return ExportReport(Path(out), OPSET, inputs, outputs, missing_runtime=e)
    pixels, problem = comparison_pixels(model.dataset, check_images, data_dir, mirrors, progress)
    max_abs_diff, labels_agree = compare_with_onnxruntime(model, proto, pixels)
    return ExportReport(Path(out), OPSET, inputs, outputs, images_compared=len(pixels),
                        compared_on="random-pixel images" if problem else f"{model.dataset} test images",
                        max_abs_diff=max_abs_diff, labels_agree=labels_agree,
                        data_problem=problem)
