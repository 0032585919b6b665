"""mlknobs info: what a model file holds."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import json_option
from mlknobs.cli.output import echo_json, printable, say
from mlknobs.cli.train import epoch_line


@click.command("info")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path), required=False,
                envvar="MLKNOBS_MODEL", default="model.npz")
@json_option("Print the file's metadata as JSON.")
def command(model_file: Path, as_json: bool) -> None:
    """Show what a model file holds: settings, architecture, history and accuracy.

    \b
    Examples:
      mlknobs info
      mlknobs info runs/h800.npz --json
    """
    from mlknobs.io.modelfile import load_model

    model = load_model(model_file)
    meta = dict(model.meta)
    meta.pop("state", None)
    if as_json:
        echo_json({"model": str(model_file), **meta})
        return
    # Printed from the validated Model, not the raw metadata, so odd files cannot break the layout.
    config, arch = model.config, model.architecture
    say(f"{printable(str(model_file))}: mlknobs {printable(str(meta.get('kind', 'model')))} "
        f"(format {meta['format_version']}, written by mlknobs {printable(str(meta.get('mlknobs_version', '?')))} "
        f"on {printable(str(meta.get('created', '?')))})")
    say(f"  dataset       {config.dataset}")
    say(f"  classes       {', '.join(printable(name) for name in model.class_names)}")
    say(f"  network       {arch['input_size']} -> {arch['hidden_size']} {arch['hidden_activation']} "
        f"-> {arch['output_size']} {arch['output_activation']}")
    say(f"  knobs         {model.params.flat.size:,} weights and biases")
    say(f"  inputs        (pixel/255 - {model.scaling.mean:.4f}) / {model.scaling.std:.4f}  ({config.input_scaling})")
    if config.train_size:
        say(f"  trained on    the first {config.train_size:,} training digits")
    say("  settings      " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    results = model.results
    if "test_accuracy" in results:
        say(f"  test          accuracy {results['test_accuracy'] * 100:.2f} %, "
            f"loss {results.get('test_loss', float('nan')):.4f}")
    if model.parent:
        parent, accuracy = model.parent, model.parent.get("test_accuracy")
        shown = f"test accuracy {accuracy * 100:.2f} %" if isinstance(accuracy, (int, float)) else "no test result"
        say(f"  trained from  {printable(str(parent.get('path')))} ({printable(str(parent.get('dataset')))}, {shown}, "
            f"sha256 {str(parent.get('sha256'))[:12]}...)")
    if results.get("stopped_early"):
        say(f"  stopped early after epoch {len(model.history)}; weights of epoch {results.get('best_epoch')}")
    if model.history:
        say("  history")
        for entry in model.history:
            say("    " + epoch_line(entry, config.epochs))
