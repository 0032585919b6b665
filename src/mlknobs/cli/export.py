"""mlknobs export: a model as an ONNX file, checked against mlknobs on the spot."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import data_options, json_option, model_option
from mlknobs.cli.output import echo_json, note, printable, say
from mlknobs.cli.paths import refuse_output_over_input

MAX_CHECK_IMAGES = 10_000      # MNIST's and Fashion-MNIST's test sets; random pixels stand in at most this many


@click.command("export")
@model_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="ONNX file to write (replaced atomically if it exists).")
@click.option("--check-images", type=click.IntRange(0, MAX_CHECK_IMAGES), default=2000, show_default=True,
              help="Test images of the model's dataset to compare onnxruntime with mlknobs on (0: no comparison; "
                   "at most a test set's 10,000).")
@data_options
@json_option("Print one JSON object: out, opset, inputs, outputs, max_abs_diff (and labels_agree, compared_on).")
def command(model_path: Path, out: Path, check_images: int, data_dir: Path, mirrors: tuple[str, ...],
            as_json: bool) -> None:
    """Export a model to ONNX, to run it anywhere ONNX runs (onnxruntime, browsers, phones).

    The graph takes `pixels`, float32 (N, 784): raw values 0-255, light ink on black as in
    MNIST (what `mlknobs predict` makes of a picture); the input scaling is inside. It returns
    `probabilities` (N, 10) and `label` (N,). The file records the mlknobs version, dataset,
    class names, input convention and test accuracy in its metadata.

    After writing, onnxruntime (if installed) runs the file on the first --check-images test
    images of the model's dataset, loaded like `mlknobs eval` does, and the largest difference
    from mlknobs' own probabilities is reported. If the dataset cannot be loaded, random pixels
    are compared instead, and the output says so.

    \b
    Examples:
      mlknobs export --out model.onnx
      mlknobs export --model runs/h800.npz --out h800.onnx --json
      mlknobs export --out model.onnx --check-images 0    # no comparison, no dataset needed
    """
    from mlknobs.cli.messages import to_click
    from mlknobs.io.export import export_onnx
    from mlknobs.io.modelfile import load_model

    refuse_output_over_input({"--out": out}, {"--model": model_path})
    model = load_model(model_path)
    report = export_onnx(model, out, check_images, data_dir, mirrors, progress=False if as_json else None)
    notes = []
    if report.missing_runtime is not None:       # worded as the CLI words every missing extra
        notes.append(f"not compared: {to_click(report.missing_runtime, None).message}")
    if report.data_problem:
        notes.append(f"{model.dataset} test images could not be loaded, so images of random pixels were "
                     f"compared instead (check --data-dir and --mirror):\n{report.data_problem}")
    for text in notes:                            # a download error lists its mirrors, one a line
        for number, line in enumerate(text.splitlines()):
            note(f"{'Note: ' if number == 0 else '  '}{printable(line)}")
    if as_json:
        echo_json({"out": str(report.out), "opset": report.opset, "inputs": report.inputs,
                   "outputs": report.outputs, "max_abs_diff": report.max_abs_diff,
                   "labels_agree": report.labels_agree, "compared_on": report.compared_on,
                   "images_compared": report.images_compared, "notes": notes})
        return
    say(f"wrote {printable(str(report.out))} (ONNX opset {report.opset})")
    for kind, values in (("input", report.inputs), ("output", report.outputs)):
        for value in values:
            shape = ", ".join(str(d) for d in value["shape"])
            say(f"  {kind:6}  {value['name']}: {value['type']} ({shape})")
    if report.max_abs_diff is not None:
        say(f"onnxruntime vs mlknobs on {report.images_compared:,} {report.compared_on}: "
            f"max abs diff {report.max_abs_diff:.2g} in the probabilities, "
            f"labels agree on {round(report.labels_agree * report.images_compared):,} of {report.images_compared:,}")
    elif check_images == 0:
        say("not compared with mlknobs (--check-images 0)")
