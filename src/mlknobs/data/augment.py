"""Distorted copies of training digits: a random affine map and a smooth elastic field per digit.

Simard, Steinkraus & Platt (2003) took this very network (784-800-10, cross-entropy) from 98.4 %
to 99.3 % by showing it freshly distorted digits every epoch. Each distortion here is one small
function that returns where every output pixel should read from in the source digit; `distort`
adds them up and resamples bilinearly, for a whole chunk of digits at once:

    source(p) = centre + A (p - centre) + shift + elastic(p)      for every pixel p = (x, y)

A (2x2) combines rotation, scale and shear; elastic(p) is a random displacement field smoothed
by a Gaussian (Simard's "elastic distortion"). Everything is vectorised over the chunk:
(n, 28, 28) coordinates, four gathers for the bilinear weights; no per-digit Python loop.

The randomness comes from the Generator the caller passes, so a chunk's distortions depend only
on how that Generator was seeded (training seeds one per epoch and chunk position), never on
timing or on which thread made them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIDE = 28
CENTRE = (SIDE - 1) / 2          # rotate and scale about the middle of the field


@dataclass(frozen=True)
class Distortions:
    """How strongly to distort: each digit draws its own values uniformly within these limits."""

    rotate: float = 0.0          # degrees: turn by U(-rotate, rotate)
    scale: float = 0.0           # relative: grow or shrink by 1 + U(-scale, scale)
    shear: float = 0.0           # slant: x moves by U(-shear, shear) * (y - centre)
    shift: float = 0.0           # pixels: move by U(-shift, shift) in x and in y
    elastic: float = 0.0         # pixels: typical size of the smooth elastic displacement
    elastic_sigma: float = 4.0   # pixels: smoothness of the elastic field (Gaussian sigma)

    @property
    def active(self) -> bool:
        return any((self.rotate, self.scale, self.shear, self.shift, self.elastic))


def affine_matrices(n: int, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """(n, 2, 2) maps from output to source offsets: rotation x scale x shear, one per digit."""
    angle = np.radians(rng.uniform(-d.rotate, d.rotate, n))           # (n,)
    zoom = 1 + rng.uniform(-d.scale, d.scale, n)                      # (n,) output size / source size
    slant = rng.uniform(-d.shear, d.shear, n)                         # (n,)
    cos, sin = np.cos(angle), np.sin(angle)
    # Reading the source at (R S^-1 H) p turns, zooms and slants the digit the other way round, which
    # is as random as the forward map: each factor's range is symmetric.
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)          # (n, 2, 2)
    shear = np.stack([np.stack([np.ones(n), slant], -1), np.stack([np.zeros(n), np.ones(n)], -1)], -2)
    return rotation @ shear / zoom[:, None, None]                                            # (n, 2, 2)


def shifts(n: int, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """(n, 2) translations in pixels, (dx, dy) per digit."""
    return rng.uniform(-d.shift, d.shift, (n, 2))


def gaussian_matrix(sigma: float, side: int = SIDE) -> np.ndarray:
    """(side, side) matrix G with (G @ f) = f smoothed along one axis by a unit-sum Gaussian, zero outside.

    Smoothing a (side, side) field is then G @ f @ G.T: two small matrix products per digit, done
    for the whole chunk by one batched matmul each. Near the edges part of the kernel falls outside
    the field and reads zeros there, so the edges are smoothed as much as the middle.
    """
    positions = np.arange(side)
    g = np.exp(-0.5 * ((positions[:, None] - positions[None, :]) / sigma) ** 2)   # (side, side)
    return g / g.sum(axis=1, keepdims=True).max()                                  # the middle row sums to 1


def elastic_fields(n: int, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """(n, 2, 28, 28) smooth random displacements (dx, dy) per pixel, of typical size d.elastic pixels.

    Simard: displacements uniform in [-1, 1] per pixel, smoothed by a Gaussian, scaled by alpha.
    Smoothing shrinks their spread by a factor that depends on sigma (and, near the edges, on
    where the pixel is); it is divided out pixel by pixel, so that `elastic` is the standard
    deviation of every displacement in pixels, whatever the smoothness.
    """
    g = gaussian_matrix(d.elastic_sigma).astype(np.float32)                        # (28, 28)
    noise = rng.random((n, 2, SIDE, SIDE), dtype=np.float32) * 2 - 1             # (n, 2, 28, 28) in [-1, 1)
    # G @ f @ G.T for every field, as two large products: along x (rows of all fields at once), then y.
    smooth = (noise.reshape(-1, SIDE) @ g.T).reshape(n * 2, SIDE, SIDE)           # along x
    smooth = g @ smooth                                                            # along y, (n*2, 28, 28)
    smooth = smooth.reshape(n, 2, SIDE, SIDE)
    # The smoothed noise at pixel (i, j) has std sqrt(1/3) |G_i| |G_j| (uniform noise has variance
    # 1/3); dividing by it pixel by pixel makes every displacement's std exactly d.elastic.
    norms = np.sqrt((g ** 2).sum(axis=1))                                          # (28,)
    spread = np.float32(math.sqrt(1 / 3)) * norms[:, None] * norms[None, :]        # (28, 28)
    return smooth * (np.float32(d.elastic) / spread)


def bilinear(images: np.ndarray, source_x: np.ndarray, source_y: np.ndarray) -> np.ndarray:
    """Read images (n, 28, 28) at fractional positions (n, 28, 28): bilinear, zero (black) outside.

    Returns float32 (n, 28, 28). Each output pixel mixes its four source neighbours by area. The
    digits get a black border, so that every read lands inside (positions are clipped to it), and
    every bordered pixel is stored with its right, lower and lower-right neighbours as four bytes
    of one uint32: a single gather fetches all four neighbours of every output pixel.
    """
    n, width = len(images), SIDE + 2
    padded = np.zeros((n, width + 1, width + 1), np.uint8)        # (n, 31, 31): black border
    padded[:, 1:SIDE + 1, 1:SIDE + 1] = images
    quad = np.empty((n, width, width, 4), np.uint8)                # (n, 30, 30, 4): a pixel and 3 neighbours
    quad[..., 0], quad[..., 1] = padded[:, :-1, :-1], padded[:, :-1, 1:]
    quad[..., 2], quad[..., 3] = padded[:, 1:, :-1], padded[:, 1:, 1:]
    x = np.clip(source_x + 1, 0, width - 1.001, dtype=np.float32)  # bordered coordinates, (n, 28, 28)
    y = np.clip(source_y + 1, 0, width - 1.001, dtype=np.float32)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0                                        # how far past the top-left neighbour
    offsets = (np.arange(n, dtype=np.int32) * (width * width))[:, None, None]
    top_left = offsets + y0.astype(np.int32) * width + x0.astype(np.int32)    # (n, 28, 28) flat indices
    v = quad.view(np.uint32).reshape(-1).take(top_left)            # (n, 28, 28), four neighbours each
    v = v.view(np.uint8).reshape(n, SIDE, SIDE, 4).astype(np.float32)
    top = v[..., 0] + fx * (v[..., 1] - v[..., 0])
    bottom = v[..., 2] + fx * (v[..., 3] - v[..., 2])
    return top + fy * (bottom - top)


def distort(pixels: np.ndarray, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """Distorted copies of uint8 digits (n, 784): the same shape and dtype, new random draws per digit."""
    n = len(pixels)
    if n == 0 or not d.active:
        return pixels.copy()
    grid_y, grid_x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) - np.float32(CENTRE)   # (28, 28) each
    a = affine_matrices(n, rng, d).astype(np.float32)                                    # (n, 2, 2)
    t = shifts(n, rng, d).astype(np.float32)                                             # (n, 2)
    # source = centre + A (p - centre) - shift: moving the digit by +t means reading from p - t.
    source_x = CENTRE + a[:, 0, 0, None, None] * grid_x + a[:, 0, 1, None, None] * grid_y - t[:, 0, None, None]
    source_y = CENTRE + a[:, 1, 0, None, None] * grid_x + a[:, 1, 1, None, None] * grid_y - t[:, 1, None, None]
    if d.elastic:
        field = elastic_fields(n, rng, d)                                                # (n, 2, 28, 28)
        source_x += field[:, 0]
        source_y += field[:, 1]
    out = bilinear(pixels.reshape(n, SIDE, SIDE), source_x, source_y)                   # (n, 28, 28)
    return np.rint(out, out=out).astype(np.uint8).reshape(n, SIDE * SIDE)
