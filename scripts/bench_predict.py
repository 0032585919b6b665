"""How well does `mlknobs predict` read users' pictures? MNIST test digits redrawn as pictures.

Each test digit (or Fashion-MNIST item, with --dataset) is redrawn in several styles a user's
picture might have (enlarged on a bigger canvas, off-centre, dark ink on light paper, JPEG,
transparency, palette, 16-bit, paper noise, coloured ink on a photo of paper), encoded to the
file format, and read back through the same library function `predict` uses
(mlknobs.vision.images.read_input). The accuracy per style is compared with `eval`'s accuracy on
the same raw digits; the target is to stay within 1.5 points.

    python scripts/bench_predict.py --mirror ../shared/data               # trains H=128, 3 epochs
    python scripts/bench_predict.py --model model.npz --n 2000 --styles jpeg,noise
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # shared machines: one BLAS thread is fastest

import numpy as np
from PIL import Image, ImageFilter

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import get_dataset
from mlknobs.data.splits import load_split
from mlknobs.io.modelfile import load_model
from mlknobs.nn.model import Model
from mlknobs.training.loop import fit
from mlknobs.vision.images import read_input


def enlarged(digit: np.ndarray, rng: np.random.Generator, canvas_range=(1.3, 2.5)) -> tuple[np.ndarray, tuple]:
    """The 28×28 digit's ink (0..1, light on black) scaled up 3-10× and placed off-centre on a
    larger canvas; returns (ink (H, W) float32, canvas size)."""
    scale = rng.uniform(3, 10)
    side = round(28 * scale)
    ink = Image.fromarray(digit.reshape(28, 28)).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.clip(np.asarray(ink, np.float32) / 255, 0, 1)
    height = round(side * rng.uniform(*canvas_range))
    width = round(side * rng.uniform(*canvas_range))
    canvas = np.zeros((height, width), np.float32)
    top = rng.integers(0, height - side + 1)
    left = rng.integers(0, width - side + 1)
    canvas[top:top + side, left:left + side] = ink
    return canvas, (height, width)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def to_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def paper_and_ink(ink: np.ndarray, paper: float, pen: float) -> np.ndarray:
    """Gray levels of ink coverage `ink` (0..1) in pen colour `pen` on paper of gray `paper`."""
    return paper + (pen - paper) * ink


# Each style: (digit (784,) uint8, rng) -> encoded picture bytes.

def style_raw_png(digit, rng):
    return encode(Image.fromarray(digit.reshape(28, 28)), "PNG")


def style_big_dark_on_light(digit, rng):
    ink, _ = enlarged(digit, rng)
    return encode(Image.fromarray(to_u8(paper_and_ink(ink, 0.96, 0.08))), "PNG")


def style_light_on_dark(digit, rng):
    ink, _ = enlarged(digit, rng)
    return encode(Image.fromarray(to_u8(paper_and_ink(ink, 0.1, 0.9))), "BMP")


def style_jpeg(digit, rng):
    ink, _ = enlarged(digit, rng)
    gray = Image.fromarray(to_u8(paper_and_ink(ink, 0.95, 0.1)))
    return encode(gray, "JPEG", quality=int(rng.integers(40, 80)))


def style_rgba_transparent(digit, rng):
    ink, (height, width) = enlarged(digit, rng)
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., :3] = (20, 20, 30)                   # dark pen colour everywhere; alpha draws the digit
    rgba[..., 3] = to_u8(ink)
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def style_palette(digit, rng):
    ink, _ = enlarged(digit, rng)
    rgb = np.stack([paper_and_ink(ink, 0.97, 0.15), paper_and_ink(ink, 0.95, 0.1),
                    paper_and_ink(ink, 0.9, 0.35)], axis=-1)
    image = Image.fromarray(to_u8(rgb)).quantize(colors=16)
    return encode(image, "GIF" if rng.random() < 0.5 else "PNG")


def style_16bit(digit, rng):
    ink, _ = enlarged(digit, rng)
    levels = np.rint(paper_and_ink(ink, 0.05, 0.85) * 65535).astype(np.uint16)
    return encode(Image.fromarray(levels), "PNG")      # opens as mode I;16


def style_noise(digit, rng):
    ink, (height, width) = enlarged(digit, rng)
    gray = paper_and_ink(ink, 0.85, 0.15) + rng.normal(0, 0.06, (height, width))
    specks = rng.random((height, width)) < 0.0005   # pepper: isolated dark dots
    gray[specks] = 0.1
    return encode(Image.fromarray(to_u8(gray)), "JPEG", quality=85)


def style_photo(digit, rng):
    """Blue ballpoint on cream paper, light falling off towards one side, slightly soft, JPEG, RGB."""
    ink, (height, width) = enlarged(digit, rng, canvas_range=(1.6, 2.8))
    light = np.linspace(1.0, rng.uniform(0.8, 0.92), width)[None, :]   # (1, W) illumination
    paper, pen = np.array([0.95, 0.92, 0.84]), np.array([0.15, 0.2, 0.55])
    rgb = (paper + (pen - paper) * ink[..., None]) * light[..., None]
    rgb += rng.normal(0, 0.02, rgb.shape)
    image = Image.fromarray(to_u8(rgb)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return encode(image, "JPEG", quality=int(rng.integers(60, 90)))


def thinned(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel skeleton of a bool mask (the line a thin pen draws)."""
    skeleton = np.pad(mask, 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = skeleton
            # neighbours P2..P9: N, NE, E, SE, S, SW, W, NW of every inner pixel
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:], p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(n.astype(np.int32) for n in n)
            transitions = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                gone = (n[0] * n[2] * n[4] == 0) & (n[2] * n[4] * n[6] == 0)
            else:
                gone = (n[0] * n[2] * n[6] == 0) & (n[0] * n[4] * n[6] == 0)
            delete = (p[1:-1, 1:-1] == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & gone
            if delete.any():
                p[1:-1, 1:-1][delete] = 0
                changed = True
        if not changed:
            return skeleton[1:-1, 1:-1].astype(bool)


def style_thin_pen(digit, rng):
    """The digit's skeleton drawn with a thin pen (1-3 px on a 100-300 px digit), black on white."""
    ink, _ = enlarged(digit, rng)
    mask = ink > 0.5
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    inside = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))   # thin only where ink is
    skeleton = np.zeros_like(mask)
    skeleton[inside] = thinned(mask[inside])
    line = Image.fromarray(skeleton.astype(np.uint8) * 255)
    pen = int(rng.integers(1, 3)) * 2 + 1
    line = np.asarray(line.filter(ImageFilter.MaxFilter(pen)), np.float32) / 255
    return encode(Image.fromarray(to_u8(paper_and_ink(line, 1.0, 0.0))), "PNG")


STYLES = {"raw-png": style_raw_png, "dark-on-light": style_big_dark_on_light,
          "light-on-dark-bmp": style_light_on_dark, "jpeg": style_jpeg,
          "rgba-transparent": style_rgba_transparent, "palette": style_palette, "16-bit": style_16bit,
          "noise": style_noise, "photo": style_photo, "thin-pen": style_thin_pen}


def quick_model(args) -> Model:
    config = TrainConfig(hidden_size=128, epochs=3, seed=0, dataset=args.dataset)
    train = load_split(args.dataset, "train", args.data_dir, args.mirror, progress=False)
    test = load_split(args.dataset, "test", args.data_dir, args.mirror, progress=False)
    print(f"training a quick {args.dataset} model (H={config.hidden_size}, {config.epochs} epochs) ...",
          file=sys.stderr)
    return fit(config, train, test, get_dataset(args.dataset).class_names, progress=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model file (default: train a quick one)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"),
                        help="dataset of the quick model (a --model brings its own)")
    parser.add_argument("--n", type=int, default=2000, help="test digits per style")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated subset of: " + ", ".join(STYLES))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MLKNOBS_DATA_DIR", "data")))
    parser.add_argument("--mirror", action="append", default=os.environ.get("MLKNOBS_MIRROR", "").split())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    styles = [s for s in args.styles.split(",") if s]
    unknown = sorted(set(styles) - set(STYLES))
    if unknown:
        parser.error(f"unknown styles: {', '.join(unknown)}")

    model = load_model(args.model) if args.model else quick_model(args)
    test = load_split(model.dataset, "test", args.data_dir, args.mirror, progress=False)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(test), size=min(args.n, len(test)), replace=False)
    digits, labels = test.images[chosen], test.labels[chosen]
    raw_accuracy = float((model.predict_proba(digits).argmax(1) == labels).mean())
    print(f"model: {model.dataset}, H={model.params.hidden_size}, {len(labels)} test images; eval on raw: "
          f"{raw_accuracy * 100:.2f} %")
    print(f"{'style':<18} {'accuracy':>9} {'vs eval':>8} {'ms/image':>9}  {'same as raw':>11}")
    worst = 0.0
    raw_predictions = model.predict_proba(digits).argmax(1)
    for style in styles:
        draw = STYLES[style]
        style_rng = np.random.default_rng([args.seed, list(STYLES).index(style)])
        pictures = [draw(d, style_rng) for d in digits]
        started = time.perf_counter()
        inputs = np.stack([read_input(p, model.dataset, name=f"{style}#{i}") for i, p in enumerate(pictures)])
        seconds = time.perf_counter() - started
        predictions = model.predict_proba(inputs).argmax(1)
        accuracy = float((predictions == labels).mean())
        worst = max(worst, raw_accuracy - accuracy)
        print(f"{style:<18} {accuracy * 100:>8.2f} % {(accuracy - raw_accuracy) * 100:>+7.2f} "
              f"{seconds / len(pictures) * 1000:>9.2f}  {(predictions == raw_predictions).mean() * 100:>10.1f} %")
    verdict = "within" if worst <= 0.015 else "NOT within"
    print(f"largest drop vs eval: {worst * 100:.2f} points ({verdict} the 1.5-point target)")
    return 0 if worst <= 0.015 else 1


if __name__ == "__main__":
    sys.exit(main())
