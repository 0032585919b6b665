"""An animation of learning: the hidden units' input weights, copied a few times per epoch, as a GIF.

`WeightSnapshots.record` is a training callback (see training.loop.Progress). It copies the first
`max_units` columns of w1 (the weights are updated in place, so a view would show only the last
state) at a few evenly spaced steps per epoch: a set lookup per step and ~0.2 MB per frame,
negligible next to the step itself. A long run gets fewer frames per epoch, then frames in fewer
epochs, so that there are never more than MAX_FRAMES (~30 MB) however many epochs it has.
`gif_bytes` paints the frames with NumPy and Pillow alone, no matplotlib: each weight becomes an
index into a blue-white-red palette, and the GIF stores those indices.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from mlknobs.viz.tiles import grid_shape, tile_grid

if TYPE_CHECKING:
    from mlknobs.training.loop import Progress

FRAMES_PER_EPOCH = 6
MAX_FRAMES = 150                   # besides the first: bounds the memory of a long run
MAX_UNITS = 64
FRAME_MILLISECONDS = 150
LAST_FRAME_MILLISECONDS = 2500    # linger on the trained weights before the loop starts again

# ColorBrewer RdBu, blue (negative) -> near white (zero) -> red (positive), as in `mlknobs plot weights`.
_RDBU_ANCHORS = np.array([
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)], dtype=np.float64)
RAMP_LEVELS = 251                  # palette entries 0..250 are the colour ramp; 125 is zero
BACKGROUND, INK, TRACK, BAR = 251, 252, 253, 254
_EXTRA_COLOURS = [(255, 255, 255), (20, 20, 20), (215, 215, 215), (90, 90, 90)]

TILE_GAP = 3                       # pixels between tiles
MARGIN = 10
HEADER = 50                        # pixels above the grid for the caption and the progress bar
TARGET_GRID_WIDTH = 640


def diverging_palette() -> list[int]:
    """The GIF palette, flattened RGB: a ramp of RAMP_LEVELS colours, then the page colours."""
    anchor_positions = np.linspace(0, 1, len(_RDBU_ANCHORS))
    levels = np.linspace(0, 1, RAMP_LEVELS)
    ramp = np.stack([np.interp(levels, anchor_positions, _RDBU_ANCHORS[:, c]) for c in range(3)], axis=1)
    colours = np.vstack([ramp, _EXTRA_COLOURS]).round().astype(np.uint8)     # (255, 3)
    return colours.ravel().tolist()


class WeightSnapshots:
    """Copies of the first hidden units' input weights, taken at evenly spaced steps of every epoch."""

    def __init__(self, epochs: int, start_weights: np.ndarray | None = None, start_label: str = "start",
                 start_epoch: int = 0, frames_per_epoch: int = FRAMES_PER_EPOCH, max_units: int = MAX_UNITS):
        """Without start_weights, the first frame comes from the run's "start" event (see `record`)."""
        self.epochs = epochs
        self.max_units = max_units
        self.hidden_size = self.units = 0       # known from the first frame
        self.frames_per_epoch = frames_per_epoch
        self.frames: list[np.ndarray] = []      # each (784, units) float32
        self.captions: list[str] = []
        self.progress: list[float] = []         # fraction of the whole run done at each frame
        self._snapshot_batches: dict[int, frozenset[int]] = {}
        if start_weights is not None:
            self._record(start_weights, start_label, start_epoch / epochs)

    def record(self, progress: Progress) -> None:
        """The training callback (see training.loop.Progress): a frame at the start and a few per epoch."""
        if progress.event == "start":
            done = progress.epoch - 1
            label = "initial random weights" if done == 0 else f"resumed after epoch {done}"
            self._record(progress.params.w1, label, done / self.epochs)
        elif progress.event == "step" and self._recorded_epoch(progress.epoch, progress.epochs) \
                and progress.batch - 1 in self.snapshot_batches(progress.batches):
            self._record(progress.params.w1,
                         f"epoch {progress.epoch}/{self.epochs}, batch {progress.batch}/{progress.batches}",
                         (progress.epoch - 1 + progress.batch / progress.batches) / self.epochs)

    def _record(self, w1: np.ndarray, caption: str, progress: float) -> None:
        if not self.frames:
            self.hidden_size = w1.shape[1]
            self.units = min(self.hidden_size, self.max_units)
        self.frames.append(w1[:, :self.units].copy())      # copy: fit updates w1 in place
        self.captions.append(caption)
        self.progress.append(progress)

    def _frames_per_epoch(self) -> int:
        return max(1, min(self.frames_per_epoch, MAX_FRAMES // self.epochs))

    def _recorded_epoch(self, epoch: int, epochs: int) -> bool:
        """Every epoch, unless one frame per epoch would still exceed MAX_FRAMES: then every k-th and the last."""
        stride = math.ceil(self.epochs * self._frames_per_epoch() / MAX_FRAMES)
        return epoch % stride == 0 or epoch == epochs

    def snapshot_batches(self, batches_per_epoch: int) -> frozenset[int]:
        """The 0-based batches after which a frame is taken; the epoch's last batch is always one."""
        if batches_per_epoch not in self._snapshot_batches:
            count = min(self._frames_per_epoch(), batches_per_epoch)
            self._snapshot_batches[batches_per_epoch] = frozenset(
                math.ceil(k * batches_per_epoch / count) - 1 for k in range(1, count + 1))
        return self._snapshot_batches[batches_per_epoch]

    def gif_bytes(self, title: str = "") -> bytes:
        """The recorded frames as a looping animated GIF.

        Each unit keeps one colour scale through the whole animation, its largest |weight| over
        all frames, so a tile visibly grows from faint noise into its final pattern; a scale per
        frame would show the early noise at full contrast. Scales differ between units because
        their strengths differ several-fold and a weak unit's pattern is as telling as a strong one's.
        """
        from PIL import Image, ImageDraw

        stack = np.stack(self.frames)                                     # (F, 784, U)
        limits = np.abs(stack).max(axis=(0, 1))                           # (U,)
        limits = np.maximum(limits, np.finfo(np.float32).tiny)
        middle = (RAMP_LEVELS - 1) / 2
        levels = np.rint(np.clip(stack / limits, -1, 1) * middle + middle).astype(np.uint8)  # (F, 784, U)

        rows, columns = grid_shape(self.units)
        zoom = max(2, min(8, round(TARGET_GRID_WIDTH / (columns * 28))))
        cell = 28 * zoom + TILE_GAP
        width = max(columns * cell - TILE_GAP + 2 * MARGIN, 420)
        height = HEADER + rows * cell - TILE_GAP + 2 * MARGIN
        left = (width - (columns * cell - TILE_GAP)) // 2
        font = _font(13)
        palette = diverging_palette()
        shown = (f"{self.units} of {self.hidden_size} hidden units" if self.units < self.hidden_size
                 else f"all {self.hidden_size} hidden units")

        images = []
        for frame, caption, progress in zip(levels, self.captions, self.progress):
            tiles = frame.T.reshape(self.units, 28, 28).repeat(zoom, axis=1).repeat(zoom, axis=2)
            grid, _ = tile_grid(tiles, columns, (cell, cell), fill=BACKGROUND)
            page = np.full((height, width), BACKGROUND, np.uint8)
            page[HEADER + MARGIN:HEADER + MARGIN + rows * cell - TILE_GAP,
                 left:left + columns * cell - TILE_GAP] = grid[:rows * cell - TILE_GAP, :columns * cell - TILE_GAP]
            bar_top, bar_right = HEADER - 8, width - MARGIN
            page[bar_top:bar_top + 5, MARGIN:bar_right] = TRACK
            page[bar_top:bar_top + 5, MARGIN:MARGIN + round(progress * (bar_right - MARGIN))] = BAR
            image = Image.frombytes("P", (width, height), page.tobytes())
            image.putpalette(palette)
            draw = ImageDraw.Draw(image)
            draw.text((MARGIN, 6), f"{title}  input weights of {shown}" if title else f"input weights of {shown}",
                      fill=INK, font=font)
            draw.text((MARGIN, 23), f"{caption}   (red: bright pixel turns unit on, blue: off)",
                      fill=INK, font=font)
            images.append(image)

        durations = [FRAME_MILLISECONDS] * (len(images) - 1) + [LAST_FRAME_MILLISECONDS]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, optimize=False)
        return buffer.getvalue()


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)       # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()
