"""The `mlknobs` command line: a thin layer over the library.

Each command parses options, calls the library, and prints. Library errors (MlknobsError) become
one-line messages with exit code 1; usage errors exit 2 (click's convention); Ctrl-C exits 130.
Heavy imports (NumPy, requests, Pillow) happen inside the commands so `mlknobs --help` is quick.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from mlknobs import __version__

DATASET_NAMES = ("mnist", "fashion-mnist")
LOSS_NAMES = ("cross-entropy", "mse")
SCHEDULE_NAMES = ("constant", "step", "cosine", "one-cycle")
EXIT_INTERRUPTED = 130


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


def data_options(func):
    """--dataset, --data-dir and --mirror, shared by every command that reads a dataset."""
    func = click.option("--mirror", "mirrors", multiple=True, envvar="MLKNOBS_MIRROR", show_envvar=True,
                        metavar="URL_OR_DIR",
                        help="Mirror to try before the built-in ones: http(s)/file URL or local folder "
                             "holding <dataset>/<file>. Repeatable; the variable takes a "
                             "whitespace-separated list.")(func)
    func = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default="data",
                        envvar="MLKNOBS_DATA_DIR", show_envvar=True, show_default=True,
                        help="Where datasets are cached, one sub-folder per dataset.")(func)
    return func


def dataset_option(default: str | None = "mnist"):
    return click.option("--dataset", type=click.Choice(DATASET_NAMES), default=default,
                        envvar="MLKNOBS_DATASET", show_envvar=True, show_default=default is not None,
                        help="Which dataset.")


def model_option(func):
    return click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
                        default="model.npz", envvar="MLKNOBS_MODEL", show_envvar=True, show_default=True,
                        help="Model file to read.")(func)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Option callback: FloatRange lets nan and inf through; no knob makes sense with them."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _progress(quiet: bool) -> bool | None:
    """False when asked to be quiet; otherwise let tqdm decide (bars only on a terminal)."""
    return False if quiet else None


def _echo_json(obj) -> None:
    """One line of strict JSON: NumPy scalars become numbers, NaN and infinity become null."""
    click.echo(json.dumps(_nan_to_null(obj), allow_nan=False, default=_json_default))


def _nan_to_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(v) for v in value]
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlknobs")
def cli() -> None:
    """Train, check, evaluate and use a handwritten-digit classifier built from scratch in NumPy.

    \b
    Quick start:
      mlknobs train --epochs 3          # downloads MNIST, trains, saves model.npz
      mlknobs eval                      # accuracy, per-class report, confusion matrix
      mlknobs predict my-digit.png      # what the network sees in your picture
      mlknobs gradcheck                 # backprop vs. nudging each knob by h

    Offline: --mirror DIR (or MLKNOBS_MIRROR=DIR) with DIR/mnist/*.gz.
    """


# --- download -------------------------------------------------------------------------------------

@cli.command()
@dataset_option()
@data_options
@click.option("--force", is_flag=True, help="Fetch again even if a verified copy is present.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only errors.")
def download(dataset: str, data_dir: Path, mirrors: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Download a dataset's four IDX files and verify their SHA-256.

    Mirrors are tried in order: yours (--mirror, MLKNOBS_MIRROR), then the built-in ones. A file
    reaches its final name only after its checksum passes; a verified file is not fetched again.

    \b
    Examples:
      mlknobs download
      mlknobs download --dataset fashion-mnist
      mlknobs download --mirror ../shared/data      # offline: DIR/mnist/*.gz
      MLKNOBS_MIRROR=https://example.org/datasets/ mlknobs download
    """
    from mlknobs.data.datasets import get_dataset
    from mlknobs.data.download import ensure_dataset
    from mlknobs.errors import MlknobsError

    try:
        paths = ensure_dataset(get_dataset(dataset), data_dir, mirrors, force=force, progress=_progress(quiet))
    except (MlknobsError, ValueError) as e:
        raise _fail(e) from e
    if not quiet:
        for path in paths.values():
            click.echo(f"ok  {path}")


# --- train ----------------------------------------------------------------------------------------

@cli.command()
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Passes over the training set.")
@click.option("--hidden-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Number of sigmoid hidden units H.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Samples per gradient step.")
@click.option("--lr", "learning_rate", callback=_finite, type=click.FloatRange(min=0, min_open=True), default=0.5,
              show_default=True, help="Peak learning rate.")
@click.option("--momentum", callback=_finite, type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
              help="Momentum (0 = plain SGD).")
@click.option("--nesterov", is_flag=True, help="Use Nesterov momentum.")
@click.option("--weight-decay", callback=_finite, type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="L2 penalty on the weights (not the biases).")
@click.option("--schedule", type=click.Choice(SCHEDULE_NAMES), default="one-cycle", show_default=True,
              help="Learning-rate schedule over all steps.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="cross-entropy", show_default=True,
              help="cross-entropy (softmax outputs) or mse (sigmoid outputs, the classic tutorial net).")
@click.option("--val-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hold out the last N training samples for validation.")
@click.option("--early-stopping", "patience", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="PATIENCE", help="Stop after PATIENCE epochs without validation gain and keep the "
                                       "best epoch's weights (needs --val-size).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for initial weights and shuffling.")
@click.option("--threads", type=click.IntRange(min=1), default=1, envvar="MLKNOBS_THREADS",
              show_envvar=True, show_default=True, help="BLAS threads (1 is fastest on busy shared cores).")
@dataset_option()
@data_options
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default="model.npz",
              envvar="MLKNOBS_MODEL", show_envvar=True, show_default=True, help="Where to save the model.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run saved beside --out (OUT.ckpt.npz).")
@click.option("--fresh", is_flag=True, help="Start a new run even though OUT.ckpt.npz holds an interrupted one "
                                             "(which is then replaced).")
@click.option("--snapshots", "snapshots_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.gif", help="Also record the hidden units' input weights a few times per epoch "
                                       "and save them as an animated GIF (the first 64 units).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results on stdout.")
@click.pass_context
def train(ctx: click.Context, epochs, hidden_size, batch_size, learning_rate, momentum, nesterov,
          weight_decay, schedule, loss, val_size, patience, seed, threads, dataset, data_dir, mirrors,
          out: Path, resume: bool, fresh: bool, snapshots_path: Path | None, quiet: bool,
          as_json: bool) -> None:
    """Train the network on MNIST (or Fashion-MNIST) and save it.

    Downloads the dataset on first use. After every epoch a checkpoint OUT.ckpt.npz is saved; if
    the run is interrupted (Ctrl-C), `--resume` continues it and ends with the same weights as an
    uninterrupted run.

    \b
    Examples:
      mlknobs train --epochs 3
      mlknobs train --hidden-size 800 --epochs 15 --lr 0.1 --weight-decay 5e-5
      mlknobs train --loss mse --momentum 0 --schedule constant --lr 3 --hidden-size 30
      mlknobs train --val-size 10000 --early-stopping 3 --epochs 30
      mlknobs train --resume
      mlknobs train --hidden-size 64 --snapshots learning.gif
      mlknobs train --json --quiet > result.json
    """
    from mlknobs.config import TrainConfig
    from mlknobs.data.splits import load_split
    from mlknobs.data.datasets import get_dataset
    from mlknobs.errors import MlknobsError, TrainingDiverged
    from mlknobs.io.modelfile import load_checkpoint, save_model
    from mlknobs.files import check_writable
    from mlknobs.errors import TrainingInterrupted
    from mlknobs.training.loop import checkpoint_path_for, fit

    knobs = dict(epochs=epochs, hidden_size=hidden_size, batch_size=batch_size, learning_rate=learning_rate,
                 momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                 loss=loss, val_size=val_size, early_stopping=patience, seed=seed, threads=threads,
                 dataset=dataset)
    checkpoint = checkpoint_path_for(out)
    try:
        check_writable(out)
        _check_snapshots_path(snapshots_path, out, checkpoint)
        if resume and fresh:
            raise click.UsageError("--resume and --fresh contradict each other")
        if checkpoint.exists() and not (resume or fresh):
            raise click.ClickException(
                f"{checkpoint} holds an interrupted run: continue it with `mlknobs train --resume --out {out}`, "
                f"or pass --fresh to start over and replace it")
        resumed = None
        if resume:
            if not checkpoint.exists():
                raise click.ClickException(f"nothing to resume: no checkpoint at {checkpoint}")
            resumed = load_checkpoint(checkpoint)
            config = resumed.model.config
            _check_resume_knobs(ctx, knobs, config)
        else:
            config = TrainConfig(**knobs)
        snapshots = _start_snapshots(snapshots_path, config)
    except (MlknobsError, ValueError) as e:
        raise _fail(e) from e

    spec = get_dataset(config.dataset)
    progress = _progress(quiet)

    def on_epoch(entry: dict) -> None:
        if not quiet:
            click.echo(_epoch_line(entry, config.epochs), err=True)

    try:
        train_split = load_split(spec, "train", data_dir, mirrors, progress=progress)
        test_split = load_split(spec, "test", data_dir, mirrors, progress=progress)
        if resumed is not None and not quiet:
            click.echo(f"resuming from {checkpoint}: epoch {resumed.state['loop']['epochs_done']} "
                       f"of {config.epochs} done", err=True)
        model = fit(config, train_split, test_split, spec.class_names, checkpoint=checkpoint,
                    resume=resumed, progress=progress, on_epoch=on_epoch,
                    on_batch=snapshots.on_batch if snapshots is not None else None,
                    on_start=snapshots.on_start if snapshots is not None else None)
        save_model(out, model)
    except TrainingInterrupted as e:
        if snapshots is not None and len(snapshots.frames) > 1:
            _save_snapshots(snapshots, snapshots_path, quiet)   # the frames so far are worth keeping
        hint = f"; resume with: mlknobs train --resume --out {out}" if e.checkpoint else ""
        click.echo(f"Error: {e}{hint}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except TrainingDiverged as e:
        if not resume:
            checkpoint.unlink(missing_ok=True)   # this run's own state led here; a resumed one is the user's
        raise _fail(e) from e
    except (MlknobsError, ValueError) as e:
        raise _fail(e) from e
    checkpoint.unlink(missing_ok=True)
    if snapshots is not None and not _save_snapshots(snapshots, snapshots_path, quiet):
        sys.exit(1)

    results = model.results
    if as_json:
        _echo_json({"test_accuracy": results["test_accuracy"], "test_loss": results["test_loss"],
                    "epochs": len(model.history), "seconds": results["seconds"], "model": str(out),
                    "dataset": config.dataset, "stopped_early": results["stopped_early"],
                    **({"best_epoch": results["best_epoch"]} if "best_epoch" in results else {}),
                    "config": config.to_dict(), "history": model.history})
    elif not quiet:
        if results["stopped_early"]:
            click.echo(f"stopped early after epoch {len(model.history)}; kept the weights of epoch "
                       f"{results['best_epoch']} (best validation accuracy)", err=True)
        click.echo(f"test accuracy {results['test_accuracy'] * 100:.2f} %  (loss {results['test_loss']:.4f}, "
                   f"{len(model.history)} epochs in {results['seconds']:.1f} s)  saved {out}")


def _check_snapshots_path(snapshots_path: Path | None, out: Path, checkpoint: Path) -> None:
    if snapshots_path is None:
        return
    if snapshots_path.suffix.lower() != ".gif":
        raise click.BadParameter(f"{snapshots_path} must be a .gif file", param_hint="--snapshots")
    if snapshots_path.resolve() in (out.resolve(), checkpoint.resolve()):
        raise click.BadParameter(f"{snapshots_path} would overwrite the model or its checkpoint",
                                 param_hint="--snapshots")


def _check_resume_knobs(ctx: click.Context, knobs: dict, config) -> None:
    """--resume continues with the saved settings; refuse explicitly given ones that differ."""
    option_of = {"early_stopping": "patience"}   # knob name -> click parameter name, where they differ
    clashes = []
    for knob, value in knobs.items():
        param = option_of.get(knob, knob)
        source = ctx.get_parameter_source(param)
        if source is click.core.ParameterSource.COMMANDLINE and getattr(config, knob) != value:
            clashes.append(f"{knob} (saved {getattr(config, knob)!r}, given {value!r})")
    if clashes:
        raise click.ClickException("--resume continues with the checkpoint's settings; these differ: "
                                   + ", ".join(clashes) + ". Drop them, or start afresh without --resume.")


EPOCH_FIELDS = (  # history key, how it is shown
    ("train_loss", "loss {:.4f}"), ("train_accuracy", "train acc {:.2%}"),
    ("val_accuracy", "val acc {:.2%}"), ("seconds", "{:.2f} s"))


def _epoch_line(entry: dict, epochs: int) -> str:
    parts = [f"epoch {entry.get('epoch', '?')}/{epochs}"]
    parts += [shown.format(entry[key]) for key, shown in EPOCH_FIELDS
              if isinstance(entry.get(key), (int, float))]
    return "  ".join(parts).replace("%", " %")


# --- info -----------------------------------------------------------------------------------------

@cli.command()
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path), required=False,
                envvar="MLKNOBS_MODEL", default="model.npz")
@click.option("--json", "as_json", is_flag=True, help="Print the file's metadata as JSON.")
def info(model_file: Path, as_json: bool) -> None:
    """Show what a model file holds: knobs, architecture, history and accuracy.

    \b
    Examples:
      mlknobs info
      mlknobs info runs/h800.npz --json
    """
    from mlknobs.errors import MlknobsError
    from mlknobs.io.modelfile import architecture, load_model

    try:
        model = load_model(model_file)
    except MlknobsError as e:
        raise _fail(e) from e
    meta = dict(model.meta)
    meta.pop("state", None)
    if as_json:
        _echo_json({"model": str(model_file), **meta})
        return
    # Printed from the validated Model, not the raw metadata, so odd files cannot break the layout.
    config, arch = model.config, architecture(model.params, model.loss)
    click.echo(f"{model_file}: mlknobs {meta.get('kind', 'model')} (format {meta['format_version']}, "
               f"written by mlknobs {meta.get('mlknobs_version', '?')} on {meta.get('created', '?')})")
    click.echo(f"  dataset       {config.dataset}")
    click.echo(f"  network       {arch['input_size']} -> {arch['hidden_size']} {arch['hidden_activation']} "
               f"-> {arch['output_size']} {arch['output_activation']}")
    n_params = model.params.flat.size
    click.echo(f"  knobs         {n_params:,} weights and biases")
    click.echo(f"  inputs        (pixel/255 - {model.scaling.mean:.4f}) / {model.scaling.std:.4f}")
    click.echo("  settings      " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    results = model.results
    if "test_accuracy" in results:
        click.echo(f"  test          accuracy {results['test_accuracy'] * 100:.2f} %, "
                   f"loss {results.get('test_loss', float('nan')):.4f}")
    if results.get("stopped_early"):
        click.echo(f"  stopped early after epoch {len(model.history)}; weights of epoch {results.get('best_epoch')}")
    if model.history:
        click.echo("  history")
        for entry in model.history:
            click.echo("    " + _epoch_line(entry, config.epochs))


# --- eval -----------------------------------------------------------------------------------------

@cli.command("eval")
@model_option
@click.option("--split", type=click.Choice(("test", "train")), default="test", show_default=True,
              help="Which split of the model's dataset to measure on.")
@data_options
@click.option("--threads", type=click.IntRange(min=1), default=1, envvar="MLKNOBS_THREADS",
              show_envvar=True, show_default=True, help="BLAS threads (1 is fastest on busy shared cores).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every number.")
def eval_command(model_path: Path, split: str, data_dir: Path, mirrors: tuple[str, ...], threads: int,
                 as_json: bool) -> None:
    """Measure a model on its dataset: accuracy, loss, per-class report, confusion matrix.

    The dataset is the one the model was trained on (recorded in the model file), downloaded on
    first use. Precision is the share of images called class k that are k; recall the share of
    the k's that were found; F1 their harmonic mean; support how many k's the split holds.

    \b
    Examples:
      mlknobs eval
      mlknobs eval --model runs/h800.npz --split train
      mlknobs eval --json | jq .accuracy
    """
    from mlknobs.data.splits import load_split
    from mlknobs.errors import MlknobsError
    from mlknobs.nn.evaluate import evaluate
    from mlknobs.io.modelfile import load_model
    from mlknobs.training.loop import blas_threads

    try:
        model = load_model(model_path)
        data = load_split(model.dataset, split, data_dir, mirrors, progress=False if as_json else None)
        with blas_threads(threads):
            result = evaluate(model.params, model.loss, model.scaling, data.images, data.labels,
                              n_classes=len(model.class_names))
    except (MlknobsError, ValueError) as e:
        raise _fail(e) from e
    names = model.class_names
    if as_json:
        _echo_json({
            "model": str(model_path), "dataset": model.dataset, "split": split, "n": result.n,
            "accuracy": result.accuracy, "loss": result.loss, "loss_function": model.loss,
            "macro_f1": result.macro_f1,
            "per_class": [{"label": s.label, "name": names[s.label], "precision": s.precision,
                           "recall": s.recall, "f1": s.f1, "support": s.support} for s in result.per_class],
            "confusion": result.confusion.tolist(),
            "most_confused": [{"true": t, "true_name": names[t], "predicted": p, "predicted_name": names[p],
                               "count": c} for t, p, c in result.most_confused()],
        })
        return
    for line in _evaluation_report(result, names, f"{model_path} on {model.dataset} {split}", model.loss):
        click.echo(line)


def _evaluation_report(result, names: list[str], title: str, loss: str) -> list[str]:
    """The human-readable eval report, line by line."""
    n, right = result.n, int(result.confusion.trace())
    digits_only = all(name == str(k) for k, name in enumerate(names))
    label_of = (lambda k: str(k)) if digits_only else (lambda k: f"{k} {names[k]}")
    width = max(len("class"), *(len(label_of(k)) for k in range(len(names))))
    lines = [f"{title}: {n:,} images",
             f"accuracy   {result.accuracy * 100:.2f} %  ({right:,} right, {n - right:,} wrong)",
             f"mean loss  {result.loss:.4f} ({loss})", "",
             f"{'class':<{width}}  {'precision':>9}  {'recall':>8}  {'F1':>8}  {'support':>7}"]
    for s in result.per_class:
        lines.append(f"{label_of(s.label):<{width}}  {s.precision * 100:>7.1f} %  {s.recall * 100:>6.1f} %  "
                     f"{s.f1 * 100:>6.1f} %  {s.support:>7,}")
    lines.append(f"{'macro F1':<{width}}  {'':>9}  {'':>8}  {result.macro_f1 * 100:>6.1f} %")
    cell = max(5, len(f"{result.confusion.max():,}") + 2)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class; . = 0)",
              " " * width + "".join(f"{k:>{cell}}" for k in range(len(names)))]
    for k, row in enumerate(result.confusion):
        lines.append(f"{label_of(k):<{width}}" + "".join(f"{(f'{c:,}' if c else '.'):>{cell}}" for c in row))
    pairs = result.most_confused()
    if pairs:
        lines += ["", "most confused (true -> predicted)"]
        for true, predicted, count in pairs:
            share = count / max(result.per_class[true].support, 1) * 100
            lines.append(f"  {names[true]} -> {names[predicted]}: {count:,} images "
                         f"({share:.1f} % of class {names[true]})")
    return lines


# --- predict --------------------------------------------------------------------------------------

STDIN_NAME = "-"


@cli.command()
@model_option
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True,
              help="How many of the most likely classes to list.")
@click.option("--show", is_flag=True, help="Draw the 28x28 input the network sees, in the terminal.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per image and line: label, name, confidence, probabilities (or error).")
def predict(model_path: Path, images: tuple[str, ...], top_k: int, show: bool, as_json: bool) -> None:
    """Classify pictures of digits (or clothes, for a Fashion-MNIST model).

    IMAGE is any picture Pillow reads (PNG, JPEG, BMP, GIF, WebP, TIFF, ...), or - for stdin.
    Each is turned into what the network was trained on, the way MNIST was made: grayscale,
    light ink on black, cropped to the ink (specks and paper noise ignored, hairline strokes
    widened), the longest side scaled to 20 pixels and centred by its centre of mass in 28x28.
    A picture that already is such a 28x28 digit is used as it is.
    --show draws the result. A picture that cannot be read is reported and skipped; the exit
    code is then 1.

    \b
    Examples:
      mlknobs predict my-digit.png
      mlknobs predict --show photo-of-a-7.jpg
      mlknobs predict scans/*.png --top-k 1
      convert drawing.svg png:- | mlknobs predict -
      mlknobs predict --json *.png > predictions.jsonl
    """
    import numpy as np

    from mlknobs.errors import ImageError, MlknobsError
    from mlknobs.vision.images import read_input
    from mlknobs.io.modelfile import load_model

    if images.count(STDIN_NAME) > 1:
        raise click.UsageError("stdin (-) can be read only once")
    try:
        model = load_model(model_path)
    except MlknobsError as e:
        raise _fail(e) from e
    names = model.class_names
    failed = 0
    for image in images:
        try:
            if image == STDIN_NAME:
                pixels = read_input(_read_stdin(), model.dataset, name="<stdin>")
            else:
                pixels = read_input(image, model.dataset)
        except ImageError as e:
            failed += 1
            if as_json:
                _echo_json({"image": image, "error": str(e)})
            else:
                click.echo(f"Error: {e}", err=True)
            continue
        probabilities = model.predict_proba(pixels[None, :])[0].astype(np.float64)   # (10,)
        ranked = [int(k) for k in np.argsort(-probabilities, kind="stable")[:top_k]]
        best = ranked[0]
        if as_json:
            record = {"image": image, "label": best, "name": names[best],
                      "confidence": float(probabilities[best]),
                      "probabilities": [float(p) for p in probabilities],
                      "top_k": [{"label": k, "name": names[k], "probability": float(probabilities[k])}
                                for k in ranked]}
            if show:
                record["input"] = pixels.reshape(28, 28).tolist()
            _echo_json(record)
            continue
        line = f"{image}: {names[best]} ({probabilities[best] * 100:.1f} %)"
        if len(ranked) > 1:
            line += "   next: " + ", ".join(f"{names[k]} {probabilities[k] * 100:.1f} %" for k in ranked[1:])
        click.echo(line)
        if show:
            for row in _shaded_rows(pixels.reshape(28, 28)):
                click.echo(row)
    if failed:
        sys.exit(1)


def _read_stdin() -> bytes:
    from mlknobs.errors import ImageError

    try:
        with click.open_file(STDIN_NAME, "rb") as stdin:
            return stdin.read()
    except (OSError, RuntimeError) as e:      # a closed stdin surfaces as RuntimeError from click
        raise ImageError(f"<stdin>: cannot read ({e})") from e


def _shaded_rows(pixels) -> list[str]:
    """A 28x28 uint8 image as framed text, two characters per pixel (terminal cells are tall)."""
    shades = " ░▒▓█"
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        (shades + "┌─┐│└┘").encode(encoding)
        top, bottom, side = "┌" + "─" * 56 + "┐", "└" + "─" * 56 + "┘", "│"
    except (UnicodeEncodeError, LookupError):
        shades, top, bottom, side = " .:o@", "+" + "-" * 56 + "+", "+" + "-" * 56 + "+", "|"
    levels = (pixels.astype(int) * (len(shades) - 1) + 127) // 255        # 0..255 -> 0..4, rounded
    return [top] + [side + "".join(shades[v] * 2 for v in row) + side for row in levels] + [bottom]


# --- gradcheck ------------------------------------------------------------------------------------

@cli.command()
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="cross-entropy", show_default=True,
              help="Which loss to differentiate.")
@click.option("--hidden-size", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Hidden units of the small test network.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Random samples in the batch.")
@click.option("--eps", callback=_finite, type=click.FloatRange(min=0, max=1e3, min_open=True), default=1e-5, show_default=True,
              help="The nudge h for the central difference (L(w+h) - L(w-h)) / 2h.")
@click.option("--tol", "tolerance", callback=_finite, type=click.FloatRange(min=0, max=1e3, min_open=True), default=1e-5,
              show_default=True, help="Largest acceptable relative error (exit 1 above it).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for the network and batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def gradcheck(loss, hidden_size, batch_size, eps, tolerance, seed, as_json) -> None:
    """Check backprop against nudging every knob by a tiny h (float64, central differences).

    \b
    Examples:
      mlknobs gradcheck
      mlknobs gradcheck --loss mse --hidden-size 32 --json
    """
    from mlknobs.nn.gradcheck import gradcheck as run_gradcheck

    result = run_gradcheck(loss, hidden_size, batch_size, eps, seed, tolerance)
    if as_json:
        _echo_json({"loss": result.loss, "hidden_size": hidden_size, "batch_size": batch_size, "eps": eps,
                    "tolerance": tolerance, "passed": result.passed,
                    "max_relative_error": result.max_relative_error, "knobs_checked": result.knobs_checked,
                    "samples": [vars(s) for s in result.samples]})
    else:
        click.echo(f"gradcheck: {loss} loss, 784 -> {hidden_size} -> 10, batch {batch_size}, h = {eps:g}, float64")
        click.echo(f"  {'array':<6} {'knobs':>7}  {'max relative error':>18}")
        for name, err in result.max_relative_error.items():
            mark = "ok" if err <= tolerance else "FAIL"
            click.echo(f"  {name:<6} {result.knobs_checked[name]:>7}  {err:>18.3e}  {mark}")
        click.echo(f"  {'knob':<14} {'value':>11} {'numeric slope':>15} {'backprop slope':>15} {'rel. error':>10}")
        for s in result.samples:
            click.echo(f"  {s.name:<14} {s.value:>11.5f} {s.numeric:>15.8f} {s.backprop:>15.8f} "
                       f"{s.relative_error:>10.1e}")
        click.echo("PASSED" if result.passed else f"FAILED: relative error above {tolerance:g}")
    if not result.passed:
        sys.exit(1)


# --- plot -----------------------------------------------------------------------------------------

PLOT_KINDS = ("weights", "history", "confusion", "mistakes")


@cli.command()
@click.argument("kind", type=click.Choice(PLOT_KINDS), metavar="KIND")
@model_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Picture to write: .png, .svg or .pdf.  [default: KIND.png]")
@click.option("--max-units", type=click.IntRange(min=1), default=100, show_default=True,
              help="weights: draw at most this many hidden units (the first ones).")
@click.option("--shared-scale", is_flag=True,
              help="weights: one colour scale for all units (compares strengths) instead of one per unit "
                   "(shows every unit's pattern).")
@click.option("--count", type=click.IntRange(1, 400), default=40, show_default=True,
              help="mistakes: how many misclassified test images to show.")
@data_options
def plot(kind: str, model_path: Path, out: Path | None, max_units: int, shared_scale: bool, count: int,
         data_dir: Path, mirrors: tuple[str, ...]) -> None:
    """Draw a picture of a trained model (needs the plot extra: pip install "mlknobs[plot]").

    \b
    KIND is one of
      weights    every hidden unit's 784 input weights as a 28x28 tile: what it looks for
      history    loss and accuracy per epoch (training, validation) and the test result
      confusion  the test-set confusion matrix, every count written in
      mistakes   the test images the model gets wrong, the most confident mistakes first

    confusion and mistakes read the model's test split (downloaded on first use).

    \b
    Examples:
      mlknobs plot weights
      mlknobs plot history --model runs/h800.npz --out h800-history.png
      mlknobs plot confusion --mirror ../shared/data
      mlknobs plot mistakes --count 80 --out mistakes.pdf
      mlknobs train --snapshots learning.gif      # an animation of the weights while they learn
    """
    from mlknobs.viz import plots
    from mlknobs.files import check_writable
    from mlknobs.data.splits import load_split
    from mlknobs.errors import MlknobsError
    from mlknobs.io.modelfile import load_model

    out = out if out is not None else Path(f"{kind}.png")
    try:
        fmt = plots.picture_format(out)
        plots.require_matplotlib()
        check_writable(out)          # before seconds of loading and drawing
        model = load_model(model_path)
        name = model_path.name
        if kind == "weights":
            picture = plots.weights_figure(model, name, max_units, shared_scale, fmt)
        elif kind == "history":
            picture = plots.history_figure(model, name, fmt)
        else:
            from mlknobs.training.loop import blas_threads

            test = load_split(model.dataset, "test", data_dir, mirrors, progress=_progress(False))
            with blas_threads(1):        # 10,000 forward passes: one thread, as everywhere else
                if kind == "confusion":
                    picture = plots.confusion_figure(model, name, test, fmt)
                else:
                    picture = plots.mistakes_figure(model, name, test, count, fmt)
        plots.write_picture(out, picture)
    except (MlknobsError, ValueError) as e:
        raise _fail(e) from e
    click.echo(f"wrote {out}")


def _start_snapshots(snapshots_path: Path | None, config):
    """A recorder for `train --snapshots`, after checking the GIF can be written (None without the option)."""
    if snapshots_path is None:
        return None
    from mlknobs.files import check_writable
    from mlknobs.viz.snapshots import WeightSnapshots

    check_writable(snapshots_path)
    return WeightSnapshots(config.epochs)


def _save_snapshots(recorder, snapshots_path: Path, quiet: bool) -> bool:
    """Write the GIF; on failure print a one-line error and return False (the model is saved either way)."""
    from mlknobs.errors import MlknobsError
    from mlknobs.viz.plots import write_picture

    try:
        write_picture(snapshots_path, recorder.gif_bytes())
    except MlknobsError as e:
        click.echo(f"Error: {e}", err=True)
        return False
    if not quiet:
        click.echo(f"wrote {snapshots_path} ({len(recorder.frames)} frames)", err=True)
    return True


def main() -> None:
    """Console-script entry point: click's handling, plus Ctrl-C -> 130 and out-of-memory -> one line."""
    try:
        code = cli.main(prog_name="mlknobs", standalone_mode=False)
    except click.exceptions.Abort:          # Ctrl-C outside training (where `train` handles it)
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except MemoryError:
        click.echo("Error: not enough memory; try a smaller --hidden-size or --batch-size", err=True)
        sys.exit(1)
    except BrokenPipeError:                 # `mlknobs ... | head`: the reader left; nothing to report
        sys.exit(0)
    except OSError as e:                    # e.g. stdout on a full disk
        click.echo(f"Error: cannot write the output ({e.strerror or e})", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
