"""Turn a user's picture into the 28×28 input the network was trained on, the way MNIST was made.

MNIST's digits were scanned ink on paper, size-normalised so the longest side of the digit fills a
20×20 box (keeping the aspect ratio, anti-aliased), then placed in a 28×28 field so that the
centre of mass of the ink sits at the centre, light ink on black. A network trained on that has
only ever seen digits in that form, so a picture has to be brought into it first:

    1. read it (any format and mode Pillow knows), first frame, EXIF orientation applied, every
       size bounded and any decoder error a clear ImageError (vision/decode.py);
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlknobs.errors import ImageError
from mlknobs.vision.decode import (  # noqa: F401 - MAX_* and WORK_SIZE: the picture limits, read here too
    MAX_PICTURE_BYTES,
    MAX_PIXELS,
    WORK_SIZE,
    load_image,
    quantile,
    to_grayscale,
)

SIDE = 28                    # the network's input is SIDE × SIDE
DETECT_SIZE = 128            # stroke components are found on a grid at most this fine
MIN_CONTRAST = 0.08          # ink must differ from the paper by this much (of black-to-white)
STROKE_THRESHOLD = 0.35      # a stroke pixel differs from the paper by this fraction of the contrast
FAINT_THRESHOLD = 0.12       # ... and a pale part of a shaded object by this fraction
MIN_PIECE = 0.06             # pieces with less ink than this fraction of the largest are specks
THIN_STROKE = 0.05           # strokes thinner than this fraction of the digit's size are widened ...
MNIST_STROKE = 0.09          # ... to this, the median MNIST stroke (see _thicken_thin_strokes)


@dataclass(frozen=True)
class Layout:
    """How a dataset's images were laid out in the 28×28 field."""

    box: int                  # the longest side of the object is scaled to this many pixels
    centre_by_mass: bool      # True: centre of mass at the field's centre; False: centre the box
    shaded: bool              # photos with shading (True) or drawn ink, saturated strokes (False)


MNIST_LAYOUT = Layout(box=20, centre_by_mass=True, shaded=False)
LAYOUTS = {"mnist": MNIST_LAYOUT, "fashion-mnist": Layout(box=28, centre_by_mass=False, shaded=True)}
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
    gray = to_grayscale(load_image(source, name), name)
    return picture_to_input(gray, layout_for(dataset), name)


# --- from gray levels to the network's input -------------------------------------------------------

def picture_to_input(gray: np.ndarray, layout: Layout = MNIST_LAYOUT, name: str = "image") -> np.ndarray:
    """The network input (784,) uint8 for gray levels (H, W) in 0..1 (0 = black)."""
    ready = _already_an_input(gray, layout)
    if ready is not None:
        return ready.ravel()
    ink, noise = ink_map(gray)                                    # (H, W), light ink on ~0
    strokes = _stroke_region(ink, noise, layout, name)            # (H, W) bool
    level = _stroke_level(ink[strokes], layout)
    # Paper noise (below `noise`) and everything outside the strokes become MNIST's black; the
    # rest keeps its shading, so anti-aliased stroke edges stay as soft as they were.
    digit = np.where(strokes & (ink > noise), np.clip(ink / max(level, 1e-6), 0, 1), 0)
    rows, cols = np.nonzero(digit)
    if rows.size == 0:
        raise ImageError(f"{name}: no ink found (the picture is blank)")
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    if not layout.shaded:
        crop = _thicken_thin_strokes(crop)
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
    if quantile(border, 0.5) == 255:
        pixels, border = 255 - pixels, 255 - border               # dark on light: exact inverse
    if quantile(border, 0.5) != 0 or not pixels.any():
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
    paper = quantile(border, 0.5)
    if 0.4 <= paper <= 0.6:
        darkest, lightest = quantile(gray, 0.005), quantile(gray, 0.995)
        dark_ink = paper - darkest > lightest - paper
    else:
        dark_ink = paper > 0.5
    ink = (paper - gray) if dark_ink else (gray - paper)
    # 1.4826 * median absolute deviation estimates a Gaussian's standard deviation, unmoved by ink.
    noise = 3 * 1.4826 * quantile(np.abs(border - paper), 0.5)
    return np.maximum(ink, 0, dtype=np.float32), min(noise, 0.25)


def _stroke_level(stroke_ink: np.ndarray, layout: Layout) -> float:
    """The ink level that becomes white (255).

    MNIST's strokes are saturated: the body of a stroke is white, only its edges are gray. So the
    level that three quarters of the stroke body (the pixels at least half as strong as the
    strongest) reach becomes white. Shaded photos (Fashion-MNIST) keep their shading: only the
    strongest ink becomes white. (Tuned with scripts/bench_predict.py: saturating less thins the digits
    and costs accuracy.)
    """
    top = quantile(stroke_ink, 0.995)
    if layout.shaded:
        return top
    return quantile(stroke_ink[stroke_ink >= 0.5 * top], 0.25)


def _stroke_region(ink: np.ndarray, noise: float, layout: Layout, name: str) -> np.ndarray:
    """Where the strokes are: (H, W) bool covering every piece of ink that is not an isolated speck.

    Works on a grid of at most DETECT_SIZE cells per side, after a 3×3 blur (one bright pixel of
    noise or a JPEG ringing halo then stays far below a real stroke). Pieces above a threshold
    relative to the contrast of the strongest ink are kept if they hold at least MIN_PIECE of the
    largest piece's ink (so specks go). In shaded photos (Fashion-MNIST) the pale parts of an
    object count too: pieces above a low threshold are kept if they reach the high one somewhere.
    (For drawn ink the low threshold only picks up JPEG blocks around strokes; measured with
    scripts/bench_predict.py.) The region is grown by one cell so anti-aliased edges stay in.
    """
    cell = max(1, -(-max(ink.shape) // DETECT_SIZE))            # ceil: cell size in pixels
    coarse = _block_mean(ink, cell)                             # (h, w)
    smooth = _box3(coarse)
    contrast = float(smooth.max())
    # Averaging over cells dilutes a thin pen on a large picture, so the strongest ink at full
    # working resolution also counts as contrast.
    if max(contrast, quantile(ink, 0.999)) < MIN_CONTRAST:
        raise ImageError(f"{name}: no ink found (the picture is blank or has too little contrast)")
    strong = smooth > STROKE_THRESHOLD * contrast
    # Averaging (cell × cell, then 3 × 3) divides the noise's spread by 3 × cell.
    faint = smooth > max(FAINT_THRESHOLD * contrast, noise / (3 * cell)) if layout.shaded else strong
    labels, count = connected_components(faint)
    piece_ink = np.bincount(labels[faint], weights=coarse[faint], minlength=count)
    has_strong_ink = np.bincount(labels[strong], minlength=count)[:count] > 0
    keep = np.zeros(count + 1, bool)                            # index `count` = background
    keep[:count] = has_strong_ink & (piece_ink >= MIN_PIECE * piece_ink[has_strong_ink].max())
    region = _grow(keep[labels])
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
    """Label the 8-connected pieces of a bool mask: (labels (H, W) int64, count).

    Pieces are numbered 0..count-1; background pixels get the label `count`. Every pixel starts
    labelled with its own index; each round takes the smallest label among its neighbours, then
    jumps along labels (a label is the index of a pixel in the same piece, whose own label is no
    larger), so a piece agrees on its smallest index in a few rounds.
    """
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return np.zeros(mask.shape, np.int64), 0
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))   # only where ink is
    inside = mask[window]
    height, width = inside.shape
    size = height * width
    none = size                                              # label of background pixels
    flat_mask = inside.ravel()
    labels = np.where(flat_mask, np.arange(size), none)      # (h*w,)
    while True:
        padded = np.pad(labels.reshape(height, width), 1, constant_values=none)
        smallest = labels.reshape(height, width).copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(smallest, padded[dy:dy + height, dx:dx + width], out=smallest)
        updated = np.where(flat_mask, smallest.ravel(), none)
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
    roots, compact = np.unique(labels, return_inverse=True)  # background (`none`) sorts last
    count = int(np.count_nonzero(roots != none))
    out = np.full(mask.shape, count, np.int64)
    out[window] = compact.reshape(height, width)
    return out, count


def stroke_width(mask: np.ndarray) -> float:
    """Mean width of the strokes in a bool mask, in pixels: 2 × area / perimeter.

    A stroke of length L and width w has area L w and a perimeter of about 2 L. The perimeter is
    counted along pixel edges, which overstates diagonals, so compare only with widths measured
    the same way (MNIST's: see THIN_STROKE).
    """
    padded = np.pad(mask, 1)
    perimeter = (np.count_nonzero(padded[1:] != padded[:-1])
                 + np.count_nonzero(padded[:, 1:] != padded[:, :-1]))
    return 2 * np.count_nonzero(mask) / max(perimeter, 1)


def _thicken_thin_strokes(crop: np.ndarray) -> np.ndarray:
    """Widen strokes drawn with a pen far thinner than MNIST's, which would otherwise shrink to
    faint hairlines at 20 px, a digit the network has never seen.

    MNIST's strokes measure (stroke_width / longest side of the digit, on 8× enlarged digits) 9 %
    in the median and above 5.3 % in 99 % of digits; strokes under THIN_STROKE are widened by
    dilation to MNIST_STROKE.
    """
    longest = max(crop.shape)
    width = stroke_width(crop >= 0.5)
    radius = round((MNIST_STROKE * longest - width) / 2)
    if width >= THIN_STROKE * longest or radius < 1:
        return crop
    grown = np.pad(crop, radius)
    height, width_px = grown.shape
    for step in range(radius):
        # Alternate the 3×3 square with the 4-neighbour cross: the pen tip grows as an octagon.
        padded = np.pad(grown, 1)
        offsets = ((0, 1), (1, 0), (1, 1), (1, 2), (2, 1))
        if step % 2:
            offsets += ((0, 0), (0, 2), (2, 0), (2, 2))
        grown = np.max([padded[dy:dy + height, dx:dx + width_px] for dy, dx in offsets], axis=0)
    return grown


def _scale_to_box(crop: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longest side is `box` pixels, keeping the aspect ratio, anti-aliased."""
    from PIL import Image

    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
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
