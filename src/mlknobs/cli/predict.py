"""mlknobs predict: classify users' pictures, made to look like MNIST first."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlknobs.cli.options import json_option, model_option
from mlknobs.cli.output import echo_json, note, printable, say, shaded_rows

STDIN_NAME = "-"


@click.command("predict")
@model_option
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True,
              help="How many of the most likely classes to list.")
@click.option("--show", is_flag=True, help="Draw the 28x28 input the network sees, in the terminal.")
@json_option("One JSON object per image and line: label, name, confidence, probabilities (or error).")
def command(model_path: Path, images: tuple[str, ...], top_k: int, show: bool, as_json: bool) -> None:
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
    from mlknobs.errors import ImageError
    from mlknobs.io.modelfile import load_model
    from mlknobs.vision.classify import classify
    from mlknobs.vision.images import read_input

    if images.count(STDIN_NAME) > 1:
        raise click.UsageError("stdin (-) can be read only once")
    model = load_model(model_path)
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
                echo_json({"image": image, "error": str(e)})
            else:
                note(f"Error: {printable(str(e))}")
            continue
        report = classify(model, pixels, top_k)
        if as_json:
            echo_json({"image": image, **report, **({"input": pixels.reshape(28, 28).tolist()} if show else {})})
            continue
        line = f"{printable(image)}: {printable(report['name'])} ({report['confidence'] * 100:.1f} %)"
        if len(report["top_k"]) > 1:
            line += "   next: " + ", ".join(f"{printable(k['name'])} {k['probability'] * 100:.1f} %"
                                          for k in report["top_k"][1:])
        say(line)
        if show:
            for row in shaded_rows(pixels.reshape(28, 28)):
                say(row)
    if failed:
        sys.exit(1)


def _read_stdin() -> bytes:
    """The picture on stdin, read up to the size a picture can sensibly have (an endless stream is refused)."""
    from mlknobs.errors import ImageError
    from mlknobs.files import read_bounded
    from mlknobs.vision.images import MAX_PICTURE_BYTES

    try:
        with click.open_file(STDIN_NAME, "rb") as stdin:
            return read_bounded(stdin, MAX_PICTURE_BYTES, "<stdin>", error=ImageError, kind="picture")
    except (OSError, RuntimeError) as e:      # a closed stdin surfaces as RuntimeError from click
        raise ImageError(f"<stdin>: cannot read ({e})") from e
