"""Distorted copies of training digits: a random affine map and a smooth elastic field per digit.

Simard, Steinkraus & Platt (2003) took this very network (784-800-10, cross-entropy) from 98.4 %
to 99.3 % by showing it freshly distorted digits every epoch. Each output pixel p = (x, y) reads
the source digit at

    source(p) = centre + A (p - centre) - shift + elastic(p)

and resamples it bilinearly (black outside). A (2x2) combines rotation, scale and shear; elastic(p)
is Simard's random displacement field: white noise smoothed by a Gaussian G of width sigma along
each axis (f = G N G^T), scaled so that every displacement has standard deviation `elastic` pixels.

How it is made cheaply. A smoothed field is smooth: along one axis its covariance is G G^T, whose
eigenvalues fall off fast (sigma 4: 7 of 28 hold all but 1e-4 of its variance). So each field is
drawn as B M B^T with M a small k x k matrix of Gaussian noise and B (28, k) the leading
eigenvectors of G G^T times the square roots of their eigenvalues: the same covariance (to 1e-4 of
the variance) from k^2 random numbers instead of 784. (Simard's displacements sum hundreds of
uniform draws, so they are Gaussian for all practical purposes: these are Gaussian outright.) And
every coordinate above is linear in a few per-digit numbers (A, the shift, M), so the coordinates
of a whole chunk are ONE matrix product:

    source (2n, 784) = coefficients (2n, k^2 + 3) @ basis (k^2 + 3, 784)

with rows [elastic * vec(M), a_r0, a_r1, centre - t_r] against [vec of B(:,p) B(:,q)^T, x - centre,
y - centre, 1]. `Distorter` owns that basis and every working buffer for a chunk, so a run
allocates them once.

The randomness comes from the Generator the caller passes, so a chunk's distortions depend only
on how that Generator was seeded (training seeds one per epoch and chunk position), never on
timing or on which thread made them.
"""

from __future__ import annotations

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


# The share of the smoothed noise's variance the low-rank fields keep: what is left out is its
# roughest part, 1e-4 of it, a hundredth of a pixel at the default strength (sigma 4: k = 7 of 28).
ELASTIC_ENERGY = 1 - 1e-4


def elastic_basis(sigma: float) -> np.ndarray:
    """B (28, k): f = B M B^T with M (k, k) of unit-variance noise has the covariance of Simard's field
    G N G^T (N uniform noise) along each axis, to ELASTIC_ENERGY of its variance; rows scaled so
    that every displacement of f has standard deviation exactly 1."""
    g = gaussian_matrix(sigma)                                      # (28, 28) float64
    eigenvalues, vectors = np.linalg.eigh(g @ g.T)                  # ascending
    eigenvalues, vectors = eigenvalues[::-1].clip(min=0), vectors[:, ::-1]
    k = int(np.searchsorted(np.cumsum(eigenvalues) / eigenvalues.sum(), ELASTIC_ENERGY)) + 1
    b = vectors[:, :k] * np.sqrt(eigenvalues[:k])                   # (28, k): B B^T ~ G G^T
    return b / np.linalg.norm(b, axis=1, keepdims=True)             # std of (B M B^T)[i, j] = |B_i| |B_j| = 1


def coordinate_basis(d: Distortions) -> np.ndarray:
    """(k^2 + 3, 784) float32: the elastic fields' k^2 shapes B(:,p) B(:,q)^T, then x - centre,
    y - centre and 1 at every output pixel (see the module note). k = 0 without elastic."""
    grid_y, grid_x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) - CENTRE       # (28, 28) each
    rows = [grid_x.reshape(1, -1), grid_y.reshape(1, -1), np.ones((1, SIDE * SIDE))]
    if d.elastic:
        b = elastic_basis(d.elastic_sigma)                                       # (28, k)
        shapes = np.einsum("ip,jq->pqij", b, b).reshape(-1, SIDE * SIDE)         # (k^2, 784)
        rows.insert(0, shapes)
    return np.concatenate(rows).astype(np.float32)


class Distorter:
    """Distorted copies of chunks of up to `rows` digits, with the basis and every buffer made once.

    A chunk's coordinates, weights and gathered neighbours are tens of MB of float32: allocating
    them afresh for every chunk costs more in page faults than the arithmetic, so a training run
    keeps one Distorter.
    """

    def __init__(self, rows: int, distortions: Distortions):
        self.rows, self.d = rows, distortions
        self.basis = coordinate_basis(distortions)                     # (k^2 + 3, 784)
        self.elastic_terms = len(self.basis) - 3                      # k^2
        field = (rows, SIDE, SIDE)
        width = SIDE + 2                                              # a black border all round
        self.coefficients = np.empty((2 * rows, len(self.basis)), np.float32)
        self.noise = np.empty((2 * rows, self.elastic_terms), np.float32)
        self.source = np.empty((2 * rows, SIDE * SIDE), np.float32)   # x coordinates, then y
        self.padded = np.zeros((rows, width + 1, width + 1), np.uint8)   # border pixels stay 0 for good
        self.quad = np.empty((rows, width, width, 4), np.uint8)           # a pixel and 3 neighbours
        self.x0, self.y0 = np.empty(field, np.float32), np.empty(field, np.float32)
        self.index = np.empty(field, np.int32)
        self.gathered = np.empty(field, np.uint32)                    # four neighbours, one byte each
        self.values = np.empty((*field, 4), np.float32)               # the same four as floats
        self.offsets = (np.arange(rows, dtype=np.float32) * (width * width))[:, None, None]

    def coordinates(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Where each output pixel of n digits reads its source: x and y, (n, 28, 28) float32 each."""
        d, coefficients = self.d, self.coefficients[:2 * n]
        a = affine_matrices(n, rng, d)                                 # (n, 2, 2)
        t = shifts(n, rng, d)                                          # (n, 2)
        for axis in (0, 1):                                           # rows 0..n-1: x; n..2n-1: y
            rows = coefficients[axis * n:(axis + 1) * n]
            rows[:, -3], rows[:, -2] = a[:, axis, 0], a[:, axis, 1]
            rows[:, -1] = CENTRE - t[:, axis]                          # moving the digit by +t reads from p - t
        if self.elastic_terms:
            noise = rng.standard_normal(dtype=np.float32, out=self.noise[:2 * n])    # M: (2n, k^2), x then y
            np.multiply(noise, np.float32(d.elastic), out=coefficients[:, :self.elastic_terms])
        source = np.matmul(coefficients, self.basis, out=self.source[:2 * n])    # (2n, 784)
        return source[:n].reshape(n, SIDE, SIDE), source[n:].reshape(n, SIDE, SIDE)

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Distorted copies of uint8 digits (n, 784), n <= rows: a new array, new draws per digit."""
        n = len(pixels)
        if n == 0 or not self.d.active:
            return pixels.copy()
        if n > self.rows:
            raise ValueError(f"a chunk of {n} digits is larger than this Distorter's {self.rows}")
        x, y = self.coordinates(n, rng)
        return self._bilinear(pixels.reshape(n, SIDE, SIDE), x, y)

    def _bilinear(self, images: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """`bilinear` rounded to uint8 (n, 784), in the Distorter's buffers (x and y are overwritten)."""
        n, width = len(images), SIDE + 2
        padded, quad = self.padded[:n], self.quad[:n]
        padded[:, 1:SIDE + 1, 1:SIDE + 1] = images
        quad[..., 0], quad[..., 1] = padded[:, :-1, :-1], padded[:, :-1, 1:]
        quad[..., 2], quad[..., 3] = padded[:, 1:, :-1], padded[:, 1:, 1:]
        x0, y0 = self.x0[:n], self.y0[:n]
        for coordinate, whole in ((x, x0), (y, y0)):
            coordinate += 1                                   # bordered coordinates
            np.maximum(coordinate, 0, out=coordinate)
            np.minimum(coordinate, width - 1.001, out=coordinate)
            np.floor(coordinate, out=whole)
            coordinate -= whole                               # now the fraction past the top-left neighbour
        fx, fy = x, y
        y0 *= width                                           # flat index of the top-left neighbour, in
        y0 += x0                                              # float32: exact below 2^24 (n * 900 is)
        y0 += self.offsets[:n]
        index = self.index[:n]
        np.copyto(index, y0, casting="unsafe")
        gathered = np.take(quad.view(np.uint32).reshape(-1), index, out=self.gathered[:n])
        v = self.values[:n]
        np.copyto(v, gathered.view(np.uint8).reshape(n, SIDE, SIDE, 4), casting="unsafe")
        top, bottom = self.x0[:n], self.y0[:n]               # reused: the whole parts are no longer needed
        np.subtract(v[..., 1], v[..., 0], out=top)
        top *= fx
        top += v[..., 0]                                      # top = v0 + fx (v1 - v0)
        np.subtract(v[..., 3], v[..., 2], out=bottom)
        bottom *= fx
        bottom += v[..., 2]                                   # bottom = v2 + fx (v3 - v2)
        bottom -= top
        bottom *= fy
        bottom += top                                         # top + fy (bottom - top)
        np.rint(bottom, out=bottom)
        return bottom.astype(np.uint8).reshape(n, SIDE * SIDE)


def distort(pixels: np.ndarray, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """Distorted copies of uint8 digits (n, 784): the same shape and dtype, new random draws per digit."""
    return Distorter(max(len(pixels), 1), d)(pixels, rng)


def elastic_fields(n: int, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """(n, 2, 28, 28): the elastic displacements (dx, dy) alone, as Distorter draws them."""
    b = elastic_basis(d.elastic_sigma).astype(np.float32)                         # (28, k)
    noise = rng.standard_normal((n, 2, b.shape[1], b.shape[1]), dtype=np.float32)  # M per field
    return np.float32(d.elastic) * (b @ noise @ b.T)                               # B M B^T
