"""mlknobs eval: accuracy, loss, per-class report and confusion matrix of a model on its dataset."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import data_options, json_option, model_option, threads_option
from mlknobs.cli.output import echo_json, printable, say


@click.command("eval")
@model_option
@click.option("--split", type=click.Choice(("test", "train")), default="test", show_default=True,
              help="Which split of the model's dataset to measure on.")
@data_options
@threads_option
@json_option("Print one JSON object with every number.")
def command(model_path: Path, split: str, data_dir: Path, mirrors: tuple[str, ...], threads: int,
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
    from mlknobs.io.modelfile import load_model
    from mlknobs.nn.blas import blas_threads
    from mlknobs.nn.evaluate import evaluate

    model = load_model(model_path)
    data = load_split(model.dataset, split, data_dir, mirrors, progress=False if as_json else None)
    with blas_threads(threads):
        result = evaluate(model.params, model.loss, model.scaling, data.images, data.labels,
                          n_classes=len(model.class_names))
    names = model.class_names
    if as_json:
        echo_json({
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
    shown = [printable(name) for name in names]
    for line in evaluation_report(result, shown, f"{printable(str(model_path))} on {model.dataset} {split}",
                                  model.loss):
        say(line)


def evaluation_report(result, names: list[str], title: str, loss: str) -> list[str]:
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
