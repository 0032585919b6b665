"""A synthetic stand-in for MNIST: crude digits 0-9 drawn with random jitter, in MNIST's layout.

For tests, demos and benchmarks on machines without the real files; not a source of accuracy
figures for MNIST. Tests of training, evaluation and plots need data that a small network learns
fast but not perfectly, so they can see both learning and mistakes: from 10,000 of these digits,
one epoch of a 784-32-10 network reaches about 94 % on 2,000 others (MNIST: 93 %), three epochs
of the default 784-512-10 about 98 % (MNIST: 98 %). Drawing one takes about 0.1 ms.

Each class is a few strokes (lines, elliptic arcs, a curve) in a unit box, looking like a crude
digit. One image is drawn the way MNIST's were made, all images at once:

    1. the class's strokes as evenly spaced points, deformed: each stroke nudged, the whole digit
       bent, slanted, squeezed and rotated a little, every point wobbled;
    2. scaled so the ink's longest side is about 20 px, and splatted onto the 28×28 grid;
    3. blurred by a round pen of random width, saturated like ink (white cores, gray edges,
       exactly black elsewhere), ink strength varying a little from pixel to pixel;
    4. shifted by whole pixels so the centre of mass sits at pixel (14, 14).

So the images are uint8, white ink on black, with the ink in a 20×20 box centred by mass: the
picture pipeline (mlknobs.vision.images) passes them through unchanged, as it does MNIST digits.
Everything random comes from the numpy Generator passed in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mlknobs.data import idx
from mlknobs.data.datasets import SPLIT_FILES

SIDE = 28              # images are SIDE × SIDE
BOX = 20               # the ink's longest side, as in MNIST
CENTRE = 14.0          # where MNIST put the centre of mass (row and column index)
POINTS = 128           # points per digit skeleton: under a pixel apart even for an 8
CHUNK = 1000           # images drawn at a time
INK_CUT = 0.08         # ink below this fraction of white becomes exactly black, as in MNIST


def _line(*vertices: tuple[float, float]) -> np.ndarray:
    return np.array(vertices, float)


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> np.ndarray:
    """An elliptic arc from angle `start` to `stop` (degrees, counter-clockwise from 3 o'clock)."""
    t = np.radians(np.linspace(start, stop, 33))
    return np.stack([cx + rx * np.cos(t), cy - ry * np.sin(t)], axis=1)     # y grows downwards


def _curve(p0, p1, p2) -> np.ndarray:
    """A quadratic Bézier curve from p0 to p2, pulled towards p1."""
    t = np.linspace(0, 1, 17)[:, None]
    p0, p1, p2 = (np.array(p, float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


# Each digit: its strokes as polylines of (x, y) in a unit box, y downwards.
STROKES: dict[int, list[np.ndarray]] = {
    0: [_arc(.5, .5, .36, .5, 90, 450)],
    1: [_line((.5, 0), (.5, 1))],
    2: [np.vstack([_arc(.5, .3, .38, .3, 160, -40), _line((.08, 1), (.95, 1))])],
    3: [_arc(.46, .26, .36, .26, 150, -90), _arc(.46, .74, .4, .26, 90, -150)],
    4: [_line((.62, 0), (.05, .68), (.95, .68)), _line((.7, .3), (.7, 1))],
    5: [np.vstack([_line((.88, 0), (.25, 0), (.2, .44)), _arc(.47, .68, .4, .32, 140, -150)])],
    6: [_curve((.78, 0), (.2, .15), (.18, .72)), _arc(.48, .72, .3, .28, 180, 540)],
    7: [_line((.12, 0), (.88, 0), (.42, 1))],
    8: [_arc(.5, .24, .3, .24, -90, 270), _arc(.5, .73, .36, .27, 90, 450)],
    9: [_arc(.5, .3, .34, .3, 0, 360), _curve((.84, .3), (.82, .7), (.62, 1))],
}


def _skeleton(strokes: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` points evenly spaced along the strokes (n, 2), and the stroke each belongs to (n,)."""
    lengths = [np.linalg.norm(np.diff(s, axis=0), axis=1) for s in strokes]
    totals = np.array([seg.sum() for seg in lengths])
    counts = np.maximum(2, np.floor(n * totals / totals.sum())).astype(int)
    counts[np.argmax(totals)] += n - counts.sum()                       # exactly n in all
    points, which = [], []
    for k, (stroke, seg, count) in enumerate(zip(strokes, lengths, counts)):
        along = np.concatenate([[0], np.cumsum(seg)])                   # arc length at each vertex
        at = np.linspace(0, along[-1], count)
        points.append(np.stack([np.interp(at, along, stroke[:, 0]), np.interp(at, along, stroke[:, 1])], 1))
        which.append(np.full(count, k))
    return np.concatenate(points), np.concatenate(which)


_TEMPLATES = [_skeleton(STROKES[d], POINTS) for d in range(10)]
SKELETONS = np.stack([t[0] for t in _TEMPLATES])      # (10, POINTS, 2) x, y in the unit box
STROKE_OF = np.stack([t[1] for t in _TEMPLATES])      # (10, POINTS) stroke index of each point
# Consecutive points on the same stroke: their distances add up to the length of the ink.
JOINED = STROKE_OF[:, 1:] == STROKE_OF[:, :-1]        # (10, POINTS - 1)


def make_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` synthetic digits: images uint8 (n, 784), white on black, and labels uint8 (n,).

    Every class appears n // 10 or n // 10 + 1 times, in random order.
    """
    if n < 0:
        raise ValueError(f"number of images must be >= 0, got {n}")
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)          # (n,)
    points = _deformed_skeletons(labels, rng)                               # (n, P, 2) x, y, centred
    # Pen and pressure give strokes like MNIST's: ~19 % of pixels inked, ~8 % white, mean 0.125.
    pen_width = rng.uniform(0.5, 0.8, n)               # Gaussian pen sigma, px
    pressure = rng.uniform(1.0, 1.9, n)                # how far beyond white the core is saturated
    strength = 1 + np.float32(0.12) * rng.standard_normal((n, SIDE, SIDE), np.float32)   # (n, 28, 28)
    images = np.empty((n, SIDE, SIDE), np.uint8)
    for start in range(0, n, CHUNK):                   # small temporaries: 3x faster than all at once
        part = slice(start, start + CHUNK)
        drawn = _drawn_to_size(points[part], labels[part], pen_width[part], pressure[part], strength[part])
        images[part] = _centre_by_mass(drawn)
    return images.reshape(n, SIDE * SIDE), labels


def _deformed_skeletons(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each label's skeleton, deformed at random: (n, P, 2) x, y, unit-box sized, its box centred on 0."""
    n = len(labels)
    points = SKELETONS[labels] - 0.5                                        # (n, P, 2)
    nudge = rng.normal(0, 0.08, (n, 2, 2))                                 # per stroke (at most 2)
    points = points + np.take_along_axis(nudge, STROKE_OF[labels][..., None], axis=1)
    x, y = points[..., 0], points[..., 1]                                   # (n, P) each
    bend = rng.normal(0, 0.45, (n, 2, 1))
    x, y = x + bend[:, 0] * (y ** 2 - 0.25), y + bend[:, 1] * (x ** 2 - 0.25)
    slant = rng.normal(0.1, 0.32, (n, 1))              # MNIST digits lean right a little
    squeeze = rng.uniform(0.65, 1.15, (n, 1))          # width relative to height
    angle = np.radians(rng.normal(0, 14, (n, 1)))
    x = squeeze * (x - slant * y)                      # slanted: the top moves right (y is down)
    x, y = np.cos(angle) * x - np.sin(angle) * y, np.sin(angle) * x + np.cos(angle) * y
    points = np.stack([x, y], axis=-1) + rng.normal(0, 0.014, (n, POINTS, 2))   # hand wobble
    centred = points - (points.min(axis=1, keepdims=True) + points.max(axis=1, keepdims=True)) / 2
    return centred + rng.uniform(-0.025, 0.025, (n, 1, 2))   # where in its pixel the pen lands: ±0.5 px


def _drawn_to_size(points, labels, pen_width, pressure, strength) -> np.ndarray:
    """Images (m, 28, 28) uint8 of the skeletons, drawn so the ink's longest side is 19-20 px (a few: 18)."""
    span = np.ptp(points, axis=1).max(axis=1)          # (m,) longest side of the skeleton, unit box
    # The pen adds its own width to the box: draw once to measure that, then again to size.
    scale = (BOX - 4.0) / span                         # px per unit, a first guess
    _, box = _draw(points, labels, scale, pen_width, pressure, strength)
    pen_extent = box - span * scale
    scale = (BOX - 0.25 - pen_extent) / span
    images, box = _draw(points, labels, scale, pen_width, pressure, strength)
    while (too_big := box > BOX).any():                # rounding put a few a pixel over
        scale[too_big] *= (BOX - 1) / box[too_big]
        images[too_big], box[too_big] = _draw(points[too_big], labels[too_big], scale[too_big],
                                              pen_width[too_big], pressure[too_big], strength[too_big])
    return images


def _draw(points, labels, scale, pen_width, pressure, strength) -> tuple[np.ndarray, np.ndarray]:
    """Ink images (m, 28, 28) uint8 of skeletons at `scale` px per unit, and their ink boxes (m,)."""
    m = len(points)
    px = points * scale[:, None, None] + (SIDE - 1) / 2                   # (m, P, 2) x, y in pixels
    corner = np.floor(px).astype(np.intp)                                   # (m, P, 2)
    # The skeleton's box is centred and under BOX px, so each point's four pixels are in the field.
    assert corner.min() >= 0 and corner.max() <= SIDE - 2, "skeleton drawn outside the field"
    fx, fy = (px - corner).transpose(2, 0, 1)                               # (m, P) each
    # Bilinear splat: each point's unit of ink shared among its four nearest pixels.
    top_left = (np.arange(m)[:, None] * SIDE + corner[..., 1]) * SIDE + corner[..., 0]    # (m, P)
    pixel = top_left[..., None] + np.array([0, 1, SIDE, SIDE + 1])          # (m, P, 4)
    share = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    density = np.bincount(pixel.ravel(), share.ravel(), minlength=m * SIDE * SIDE)
    density = density.astype(np.float32).reshape(m, SIDE, SIDE)
    # A Gaussian pen, one width per image: blurred = G @ density @ G, G (m, 28, 28) symmetric.
    offsets = np.arange(-(SIDE - 1), SIDE)                                  # (55,)
    kernel = np.exp(-offsets ** 2 / (2 * pen_width[:, None] ** 2)).astype(np.float32)   # (m, 55), peak 1
    blur = kernel[:, np.arange(SIDE)[:, None] - np.arange(SIDE)[None, :] + SIDE - 1]     # (m, 28, 28)
    ink = blur @ density @ blur                                             # (m, 28, 28)
    # A straight stroke with points `spacing` px apart peaks at sqrt(2 pi) sigma / spacing after
    # the blur; dividing by that makes a stroke's core 1 whatever the pen and the size.
    steps = np.linalg.norm(np.diff(px, axis=1), axis=2)                     # (m, P - 1)
    spacing = (steps * JOINED[labels]).sum(1) / JOINED[labels].sum(1)
    core = np.sqrt(2 * np.pi) * pen_width / spacing                         # (m,)
    ink *= (pressure / core).astype(np.float32)[:, None, None] * strength
    ink = np.where(ink >= INK_CUT, np.clip(ink, 0, 1), 0)
    images = np.rint(ink * 255).astype(np.uint8)
    rows, cols = images.any(axis=2), images.any(axis=1)                     # (m, 28) each
    box = np.maximum(_extent(rows), _extent(cols))
    return images, box


def _extent(mask: np.ndarray) -> np.ndarray:
    """Per row of a (m, 28) bool mask: last True index - first True index + 1 (0 if none)."""
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last - first + 1, 0)


def _centre_by_mass(images: np.ndarray) -> np.ndarray:
    """Shift each (28, 28) image by whole pixels so its centre of mass is nearest (14, 14), as MNIST
    did; but never so far that ink leaves the field (then the centre stays a little off)."""
    weights = images.astype(np.float64)
    total = np.maximum(weights.sum(axis=(1, 2)), 1)
    index = np.arange(SIDE)

    def shift(profile: np.ndarray) -> np.ndarray:
        """Whole-pixel shifts (m,) along one axis, given the ink per row (or column) (m, 28)."""
        centre = profile @ index / total
        inked = profile > 0
        first, last = np.argmax(inked, axis=1), SIDE - 1 - np.argmax(inked[:, ::-1], axis=1)
        return np.clip(np.rint(CENTRE - centre).astype(int), -first, SIDE - 1 - last)

    rows = index[None, :] - shift(weights.sum(axis=2))[:, None]           # (m, 28) source row
    cols = index[None, :] - shift(weights.sum(axis=1))[:, None]
    # Indices outside the field bring in only black: the clipped shift moves no ink past the edge.
    return images[np.arange(len(images))[:, None, None], rows[:, :, None] % SIDE, cols[:, None, :] % SIDE]


def write_mirror(folder: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, str]:
    """Write a synthetic dataset as the four MNIST .gz files under FOLDER/mnist/, official names.

    FOLDER can then be passed as a mirror (`--mirror FOLDER`, or load_split(mirrors=[FOLDER]))
    once a DatasetSpec named "mnist" with these sums (and the files' sizes) stands in for MNIST's.
    Returns file name -> SHA-256, in MNIST's file order. The same arguments write the same bytes.
    """
    rng = np.random.default_rng(seed)
    target = Path(folder) / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make_digits(n, rng)
        image_file, label_file = SPLIT_FILES[split]
        idx.write_idx(target / image_file, images.reshape(n, SIDE, SIDE))
        idx.write_idx(target / label_file, labels)
        for name in (image_file, label_file):
            sums[name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    return sums
