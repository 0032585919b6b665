"""Distorted training digits: shapes and ranges, identity, each distortion's geometry, determinism."""

import numpy as np
import pytest

from mlknobs.data.augment import (
    Distorter,
    Distortions,
    affine_matrices,
    bilinear,
    distort,
    elastic_basis,
    elastic_fields,
    gaussian_matrix,
    shifts,
)
from mlknobs.data.synthetic import make_digits


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    images, _ = make_digits(64, np.random.default_rng(0))
    return images


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(n, 2) as (x, y) of uint8 images (n, 784)."""
    grid = images.reshape(-1, 28, 28).astype(np.float64)
    ys, xs = np.mgrid[0:28, 0:28]
    total = grid.sum(axis=(1, 2))
    return np.stack([(grid * xs).sum(axis=(1, 2)) / total, (grid * ys).sum(axis=(1, 2)) / total], axis=1)


def test_distorted_digits_keep_shape_dtype_and_range(digits):
    out = distort(digits, np.random.default_rng(1), Distortions(rotate=15, scale=0.2, shear=0.3, shift=2,
                                                                 elastic=1.5))
    assert out.shape == digits.shape and out.dtype == np.uint8
    assert out.max() <= 255 and not np.array_equal(out, digits)


def test_identity_settings_give_the_input_back(digits):
    assert np.array_equal(distort(digits, np.random.default_rng(1), Distortions()), digits)
    # A vanishingly small rotation goes through the resampler and still gives the input back.
    assert np.array_equal(distort(digits, np.random.default_rng(1), Distortions(rotate=1e-6)), digits)


def test_a_shift_moves_the_centre_of_mass_by_the_shift(digits):
    rng = np.random.default_rng(3)
    for _ in range(3):                                            # distort draws angle, zoom, slant first
        rng.uniform(0, 0, len(digits))
    expected = rng.uniform(-2, 2, (len(digits), 2))               # then the shifts
    moved = distort(digits, np.random.default_rng(3), Distortions(shift=2))
    # Digits sit well inside the field, so nothing is cut off: the centre moves by the shift, up to
    # the rounding of the resampled pixels.
    np.testing.assert_allclose(centre_of_mass(moved) - centre_of_mass(digits), expected, atol=0.05)


def test_an_integer_shift_is_an_exact_translation(digits):
    class Fixed:
        """A Generator stand-in whose uniform draws are all `value` (or the nearest end of their range)."""

        def __init__(self, value):
            self.value = value

        def uniform(self, low, high, size):
            return np.full(size, np.clip(self.value, low, high))

    out = distort(digits, Fixed(2.0), Distortions(shift=2))        # every digit moves 2 right, 2 down
    expected = np.zeros((len(digits), 28, 28), np.uint8)
    expected[:, 2:, 2:] = digits.reshape(-1, 28, 28)[:, :-2, :-2]
    np.testing.assert_array_equal(out.reshape(-1, 28, 28), expected)


def test_the_same_generator_state_gives_the_same_distortions(digits):
    d = Distortions(rotate=10, elastic=1.0)
    a = distort(digits, np.random.default_rng([7, 2, 0]), d)
    b = distort(digits, np.random.default_rng([7, 2, 0]), d)
    c = distort(digits, np.random.default_rng([7, 2, 1]), d)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_elastic_field_is_smooth_and_of_the_asked_size():
    field = elastic_fields(500, np.random.default_rng(0), Distortions(elastic=1.5, elastic_sigma=4))
    assert field.shape == (500, 2, 28, 28)
    assert abs(field.std() - 1.5) < 0.15
    # Smooth: neighbouring displacements are strongly correlated.
    neighbours = np.corrcoef(field[..., :-1].ravel(), field[..., 1:].ravel())[0, 1]
    assert neighbours > 0.9


def test_the_gaussian_reads_zeros_outside_the_field():
    sums = gaussian_matrix(3.0).sum(axis=1)
    assert sums[14] == pytest.approx(1.0) and sums[0] < 0.6      # the edge rows lose what falls outside


def test_the_elastic_field_is_as_strong_at_the_edges_as_in_the_middle():
    field = elastic_fields(4000, np.random.default_rng(1), Distortions(elastic=1.0))
    assert field[:, :, 14, 14].std() == pytest.approx(1.0, rel=0.05)
    assert field[:, :, 0, 0].std() == pytest.approx(1.0, rel=0.05)


def test_bilinear_reads_between_pixels_and_black_outside():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 10, 10], image[0, 10, 11] = 100, 200
    x = np.full((1, 28, 28), 10.25, np.float32)
    y = np.full((1, 28, 28), 10.0, np.float32)
    assert bilinear(image, x, y)[0, 0, 0] == pytest.approx(125)      # a quarter of the way to 200
    far = np.full((1, 28, 28), -5.0, np.float32)
    assert bilinear(image, far, far).max() == 0


def test_the_distorters_coordinates_are_the_affine_map_plus_the_elastic_field():
    """Distorter's one matrix product against the module note's formula, written out here in float64."""
    d = Distortions(rotate=20, scale=0.2, shear=0.3, shift=2, elastic=1.5, elastic_sigma=3)
    n = 5
    x, y = Distorter(8, d).coordinates(n, np.random.default_rng(4))
    rng = np.random.default_rng(4)                     # the same draws, in the Distorter's order
    a, t = affine_matrices(n, rng, d), shifts(n, rng, d)
    b = elastic_basis(d.elastic_sigma)
    k = b.shape[1]
    m = rng.standard_normal((2, n, k, k), dtype=np.float32).astype(np.float64)   # x fields, then y fields
    grid_y, grid_x = np.mgrid[0:28, 0:28] - (28 - 1) / 2
    for i in range(n):
        field_x, field_y = (d.elastic * b @ m[axis, i] @ b.T for axis in (0, 1))
        expected_x = 13.5 + a[i, 0, 0] * grid_x + a[i, 0, 1] * grid_y - t[i, 0] + field_x
        expected_y = 13.5 + a[i, 1, 0] * grid_x + a[i, 1, 1] * grid_y - t[i, 1] + field_y
        np.testing.assert_allclose(x[i], expected_x, atol=2e-5)
        np.testing.assert_allclose(y[i], expected_y, atol=2e-5)


def test_the_distorter_resamples_as_the_plain_bilinear_does(digits):
    d = Distortions(rotate=12, shear=0.15, elastic=1.0)
    distorter = Distorter(64, d)
    x, y = distorter.coordinates(len(digits), np.random.default_rng(9))
    expected = np.rint(bilinear(digits.reshape(-1, 28, 28), x.copy(), y.copy())).astype(np.uint8)
    np.testing.assert_array_equal(distorter(digits, np.random.default_rng(9)), expected.reshape(-1, 784))


@pytest.mark.parametrize("sigma", [2.0, 4.0, 8.0])
def test_the_low_rank_field_has_simards_covariance(sigma):
    """Simard's field G N G^T (N uniform noise), normalised per pixel, against ours: same correlations."""
    g = gaussian_matrix(sigma)
    covariance = g @ g.T                                             # along one axis
    norms = np.sqrt(np.diag(covariance))
    expected = covariance / np.outer(norms, norms)                   # correlation of rows i and j
    field = elastic_fields(20_000, np.random.default_rng(2), Distortions(elastic=1.0, elastic_sigma=sigma))
    for (i, j), (p, q) in [((14, 14), (14, 18)), ((0, 0), (0, 4)), ((14, 14), (20, 14)), ((3, 25), (5, 27))]:
        got = np.corrcoef(field[:, 0, i, j], field[:, 0, p, q])[0, 1]
        assert got == pytest.approx(expected[i, p] * expected[j, q], abs=0.02)
    assert field.std() == pytest.approx(1.0, rel=0.02)
    centred = field[:, 1, 14, 14] - field[:, 1, 14, 14].mean()
    assert (centred ** 4).mean() / centred.var() ** 2 == pytest.approx(3.0, abs=0.15)   # Gaussian, as Simard's


def test_a_chunk_larger_than_the_distorter_is_refused(digits):
    with pytest.raises(ValueError, match="larger"):
        Distorter(8, Distortions(rotate=5))(digits[:9], np.random.default_rng(0))
