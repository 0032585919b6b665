"""Turn a user's picture into the 28×28 input the network was trained on, the way MNIST was made.

MNIST's digits were scanned ink on paper, size-normalised so the longest side of the digit fills a
20×20 box (keeping the aspect ratio, anti-aliased), then placed in a 28×28 field so that the
centre of mass of the ink sits at the centre, light ink on black. A network trained on that has
only ever seen digits in that form, so a picture has to be brought into it first:

    1. read it (any format and mode Pillow knows), first frame, EXIF orientation applied;
    2. grayscale 0..1, transparent pixels composited onto a background that contrasts the ink;
    3. background level from the image border, ink = how far each pixel is from it, so dark ink
       on light paper and light ink on dark both become light ink on black;
    4. the ink's strokes found against paper noise and JPEG artefacts (a small blur, a threshold
       relative to the ink contrast, small isolated specks dropped), everything else set to 0;
    5. cropped to the strokes, the longest side scaled to 20 px (anti-aliased), placed in 28×28
       with the centre of mass at pixel (14, 14) as in MNIST.

Fashion-MNIST was made differently (the product trimmed, its longest side scaled to 28, centred
by its box), so the layout follows the dataset the model was trained on.

A picture that already is such a 28×28 input (light on black, ink within a 20 px box, centred)
passes through unchanged, so predicting it gives exactly what `mlknobs eval` computes for it.

Pillow is imported inside the functions: `mlknobs --help` should not pay for it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.errors import ImageError

if TYPE_CHECKING:
    from PIL import Image

SIDE = 28                    # the network's input is SIDE × SIDE
MAX_PIXELS = 64_000_000      # refuse larger pictures (a 64-megapixel RGBA decodes to 256 MB)
WORK_SIZE = 512              # pictures are reduced to at most this many pixels per side first
DETECT_SIZE = 128            # stroke components are found on a grid at most this fine
MIN_CONTRAST = 0.08          # ink must differ from the paper by this much (of black-to-white)
STROKE_THRESHOLD = 0.35      # a stroke pixel differs from the paper by this fraction of the contrast
MIN_PIECE = 0.06             # pieces with less ink than this fraction of the largest are specks


@dataclass(frozen=True)
class Layout:
    """How a dataset's images were laid out in the 28×28 field."""

    box: int                  # the longest side of the object is scaled to this many pixels
    centre_by_mass: bool      # True: centre of mass at the field's centre; False: centre the box
    saturate: bool            # True: a typical full stroke becomes white; False: only the brightest


MNIST_LAYOUT = Layout(box=20, centre_by_mass=True, saturate=True)
LAYOUTS = {"mnist": MNIST_LAYOUT, "fashion-mnist": Layout(box=28, centre_by_mass=False, saturate=False)}
# Where MNIST put the centre of mass, in row/column index coordinates (measured: 13.5..14.5 on
# all 70,000 images, i.e. the image was shifted by whole pixels to bring it nearest to 14).
MNIST_CENTRE = 14.0


def layout_for(dataset: str) -> Layout:
    return LAYOUTS.get(dataset, MNIST_LAYOUT)


def read_input(source: str | Path | bytes, dataset: str = "mnist", name: str | None = None) -> np.ndarray:
    """The network input (784,) uint8 for a picture given as a path or as the file's bytes.

    Raises ImageError, naming the file, for anything that is not a readable picture of ink.
    """
    name = name if name is not None else str(source if not isinstance(source, bytes) else "<bytes>")
    gray = to_grayscale(load_image(source, name))
    return picture_to_input(gray, layout_for(dataset), name)


# --- reading --------------------------------------------------------------------------------------

def load_image(source: str | Path | bytes, name: str | None = None) -> "Image.Image":
    """Open and fully decode the first frame of a picture, refusing anything unreadable or huge."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name if name is not None else str(source)
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{name}: empty input (0 bytes)")
        stream = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
        try:
            if path.stat().st_size == 0:
                raise ImageError(f"{name}: empty file (0 bytes)")
            stream = io.BytesIO(path.read_bytes())
        except OSError as e:
            raise ImageError(f"{name}: cannot read ({e.strerror or e})") from e
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{name}: {width}×{height} pixels is too large "
                                 f"(limit {MAX_PIXELS // 1_000_000} megapixels)")
            _draft_smaller(image)
            image.load()
            image = ImageOps.exif_transpose(image) or image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image dimensions are absurdly large ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not an image Pillow can read") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError,
            ZeroDivisionError) as e:
        # Truncated or corrupt data surfaces from Pillow's decoders as any of these.
        raise ImageError(f"{name}: damaged or truncated image ({e})") from e
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name}: image has no pixels")
    return image


def _draft_smaller(image: "Image.Image") -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when it is far larger than we need."""
    if image.format == "JPEG" and max(image.size) > 2 * WORK_SIZE:
        scale = max(image.size) / WORK_SIZE
        image.draft(image.mode, (int(image.width / scale), int(image.height / scale)))


def to_grayscale(image: "Image.Image") -> np.ndarray:
    """Gray levels (H, W) float32 in 0..1 (0 = black), at most WORK_SIZE per side.

    Colours become luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); transparency is composited
    onto a background chosen by `_composite`.
    """
    from PIL import Image

    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    try:
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            image, full_scale = _wide_to_float(image)
        elif has_alpha:
            image, full_scale = image.convert("RGBA"), 255.0
        elif mode in ("1", "L", "P"):
            image, full_scale = image.convert("L"), 255.0
        else:    # RGB, CMYK, YCbCr, LAB, HSV, ...
            image, full_scale = image.convert("RGB"), 255.0
    except (ValueError, OSError) as e:
        raise ImageError(f"unsupported colour mode {mode} ({e})") from e
    if max(image.size) > WORK_SIZE:
        scale = max(image.size) / WORK_SIZE
        size = (max(1, round(image.width / scale)), max(1, round(image.height / scale)))
        image = image.resize(size, Image.Resampling.BOX)   # area average; premultiplies alpha
    pixels = np.asarray(image, dtype=np.float32) / np.float32(full_scale)
    if pixels.ndim == 2:
        return pixels
    luminance = pixels[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)   # (H, W, 3) -> (H, W)
    if pixels.shape[2] == 4:
        return _composite(luminance, pixels[..., 3])
    return luminance


def _wide_to_float(image: "Image.Image") -> tuple["Image.Image", float]:
    """16-bit, 32-bit integer and float images as mode F, with the value that means white."""
    mode = image.mode
    image = image.convert("F")
    top = float(np.asarray(image).max(initial=0.0))
    if mode.startswith("I;16"):
        full_scale = 65535.0
    elif mode == "F" and top <= 1.0:
        full_scale = 1.0
    else:   # 32-bit integers or floats beyond 1: the smallest usual range that holds the values
        full_scale = next((s for s in (255.0, 65535.0) if top <= s), top)
    return image, full_scale


def _composite(luminance: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten a picture with transparency onto the background it was meant to be seen on.

    Two kinds of pictures have transparency: strokes drawn on nothing (the opaque pixels all share
    the ink's colour, whichever it is), and opaque paper with transparent margins. Strokes go onto
    the opposite of their colour (white ink onto black, black ink onto white); paper's margins take
    the paper's own colour (the commonest opaque gray).
    """
    opaque = luminance[alpha > 0.5]
    if opaque.size == 0 or alpha.min() > 0.99:
        return luminance
    low, median, high = np.percentile(opaque, [5, 50, 95])
    if high - low < 0.25:                       # one colour: strokes on nothing
        background = 0.0 if median > 0.5 else 1.0
    else:                                       # paper with transparent margins
        background = float(median)
    return luminance * alpha + np.float32(background) * (1 - alpha)


# --- from gray levels to the network's input -------------------------------------------------------

def picture_to_input(gray: np.ndarray, layout: Layout = MNIST_LAYOUT, name: str = "image") -> np.ndarray:
    """The network input (784,) uint8 for gray levels (H, W) in 0..1 (0 = black)."""
    ready = _already_an_input(gray, layout)
    if ready is not None:
        return ready.ravel()
    ink, noise = ink_map(gray)                                    # (H, W), light ink on ~0
    strokes = _stroke_region(ink, name)                           # (H, W) bool
    level = _stroke_level(ink[strokes], layout)
    # Paper noise below `noise` and everything outside the strokes goes to 0, as MNIST's black.
    digit = np.where(strokes, np.clip((ink - noise) / max(level - noise, 1e-6), 0, 1), 0)
    rows, cols = np.nonzero(digit)
    if rows.size == 0:
        raise ImageError(f"{name}: no ink found (the picture is blank)")
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    field = _place_in_field(_scale_to_box(crop, layout.box), layout)       # (28, 28) in 0..1
    return np.rint(field * 255).astype(np.uint8).ravel()


def _already_an_input(gray: np.ndarray, layout: Layout) -> np.ndarray | None:
    """A 28×28 picture laid out like the dataset (maybe inverted) as uint8 (28, 28), else None.

    "Laid out like the dataset" means a pure black border (true of every MNIST image and 99.8 %
    of Fashion-MNIST's) and, for MNIST, ink within a 20 px box whose centre of mass is at most a
    pixel from the field's centre (every MNIST image: box 19-20 px, centre within 0.5 px).
    """
    if gray.shape != (SIDE, SIDE):
        return None
    pixels = np.rint(gray * 255).astype(np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) == 255:
        pixels, border = 255 - pixels, 255 - border               # dark on light: exact inverse
    if np.median(border) != 0 or not pixels.any():
        return None
    if not layout.centre_by_mass:
        return pixels
    rows, cols = np.nonzero(pixels)
    if max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 > layout.box + 1:
        return None
    weights = pixels.astype(np.float64)
    centre = np.array([weights.sum(1) @ np.arange(SIDE), weights.sum(0) @ np.arange(SIDE)]) / weights.sum()
    return pixels if np.abs(centre - MNIST_CENTRE).max() <= 1.0 else None


def ink_map(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(ink, noise): how far each pixel is from the paper towards the ink, (H, W) float32 with
    paper ~ 0, and the level that paper noise reaches (3 robust standard deviations).

    The paper's level is the median of the image border (ink rarely covers half of it). Paper
    lighter than mid-gray means dark ink; darker means light ink; near mid-gray, the ink is on
    the side where the image's extremes reach further.
    """
    height, width = gray.shape
    ring = max(1, min(height, width) // 50)
    border = np.concatenate([gray[:ring].ravel(), gray[-ring:].ravel(),
                             gray[:, :ring].ravel(), gray[:, -ring:].ravel()])
    paper = float(np.median(border))
    if 0.4 <= paper <= 0.6:
        darkest, lightest = np.percentile(gray, [0.5, 99.5])
        dark_ink = paper - darkest > lightest - paper
    else:
        dark_ink = paper > 0.5
    ink = (paper - gray) if dark_ink else (gray - paper)
    # 1.4826 * median absolute deviation estimates a Gaussian's standard deviation, unmoved by ink.
    noise = 3 * 1.4826 * float(np.median(np.abs(border - paper)))
    return np.maximum(ink, 0, dtype=np.float32), min(noise, 0.25)


def _stroke_level(stroke_ink: np.ndarray, layout: Layout) -> float:
    """The ink level that becomes white (255).

    MNIST's strokes are saturated (the median of a digit's brighter half is ~253), so a pen's
    typical full stroke maps to white; Fashion-MNIST's photos keep their shading, so only the
    brightest ink does.
    """
    top = float(np.percentile(stroke_ink, 99.5))
    if not layout.saturate:
        return top
    return float(np.median(stroke_ink[stroke_ink >= 0.5 * top]))


def _stroke_region(ink: np.ndarray, name: str) -> np.ndarray:
    """Where the strokes are: (H, W) bool covering every piece of ink that is not an isolated speck.

    Works on a grid of at most DETECT_SIZE cells per side: a 3×3 blur first (one bright pixel of
    noise or a JPEG ringing halo then stays far below a real stroke), a threshold relative to the
    contrast of the strongest ink, connected pieces, and pieces with less than MIN_PIECE of the
    largest piece's ink dropped. The region is grown by one cell so the anti-aliased edges of
    strokes stay in.
    """
    cell = max(1, -(-max(ink.shape) // DETECT_SIZE))            # ceil: cell size in pixels
    coarse = _block_mean(ink, cell)                             # (h, w)
    smooth = _box3(coarse)
    contrast = float(smooth.max())
    if contrast < MIN_CONTRAST:
        raise ImageError(f"{name}: no ink found (the picture is blank or has too little contrast)")
    strong = smooth > STROKE_THRESHOLD * contrast
    labels, count = connected_components(strong)
    piece_ink = np.bincount(labels[strong], weights=coarse[strong], minlength=count)
    keep = np.zeros(count + 1, bool)                            # index `count` = background
    keep[:count] = piece_ink >= MIN_PIECE * piece_ink.max()
    region = _grow(keep[np.where(strong, labels, count)])
    full = np.repeat(np.repeat(region, cell, axis=0), cell, axis=1)
    return full[:ink.shape[0], :ink.shape[1]]


def _block_mean(values: np.ndarray, cell: int) -> np.ndarray:
    """Mean over cell × cell blocks (edge blocks padded with 0)."""
    if cell == 1:
        return values
    height, width = values.shape
    padded = np.zeros((-(-height // cell) * cell, -(-width // cell) * cell), np.float32)
    padded[:height, :width] = values
    return padded.reshape(padded.shape[0] // cell, cell, padded.shape[1] // cell, cell).mean(axis=(1, 3))


def _box3(values: np.ndarray) -> np.ndarray:
    """3×3 mean with zero padding."""
    padded = np.pad(values, 1)
    height, width = values.shape
    total = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    return total / np.float32(9)


def _grow(mask: np.ndarray) -> np.ndarray:
    """Dilate a bool mask by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, 1)
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + height, dx:dx + width]
    return out


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected pieces of a bool mask: (labels (H, W) int64 in 0..count-1, count).

    Every pixel starts labelled with its own index; each round takes the smallest label among its
    neighbours and then jumps along labels (a label is the index of a pixel in the same piece,
    whose own label is no larger), so a piece agrees on its smallest index in a few rounds.
    Background pixels get the label `count`.
    """
    height, width = mask.shape
    size = height * width
    none = size                                              # label of background pixels
    labels = np.where(mask.ravel(), np.arange(size), none)   # (H*W,)
    while True:
        padded = np.pad(labels.reshape(height, width), 1, constant_values=none)
        smallest = labels.reshape(height, width).copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(smallest, padded[dy:dy + height, dx:dx + width], out=smallest)
        updated = np.where(mask.ravel(), smallest.ravel(), none)
        lookup = np.append(updated, none)                    # index `none` maps to itself
        while True:
            jumped = lookup[updated]
            if np.array_equal(jumped, updated):
                break
            updated = jumped
            lookup[:size] = updated
        if np.array_equal(updated, labels):
            break
        labels = updated
    roots, compact = np.unique(labels, return_inverse=True)
    count = int(np.count_nonzero(roots != none))
    return compact.reshape(height, width), count


def _scale_to_box(crop: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longest side is `box` pixels, keeping the aspect ratio, anti-aliased."""
    from PIL import Image

    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(scaled), 0, 1)


def _place_in_field(digit: np.ndarray, layout: Layout) -> np.ndarray:
    """Put the scaled object into the SIDE × SIDE field: centre of mass (or box) at the centre."""
    height, width = digit.shape
    field = np.zeros((SIDE, SIDE), np.float32)
    if layout.centre_by_mass and digit.sum() > 0:
        weights = digit.astype(np.float64)
        centre_row = weights.sum(1) @ np.arange(height) / weights.sum()
        centre_col = weights.sum(0) @ np.arange(width) / weights.sum()
        # Whole-pixel shifts, as MNIST did; kept inside the field so no ink is cut off.
        top = int(np.clip(round(MNIST_CENTRE - centre_row), 0, SIDE - height))
        left = int(np.clip(round(MNIST_CENTRE - centre_col), 0, SIDE - width))
    else:
        top, left = (SIDE - height) // 2, (SIDE - width) // 2
    field[top:top + height, left:left + width] = digit
    return field
