"""The IDX reader: round trips for every dtype, and a clear DataFormatError for every malformed file."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlknobs.data import idx
from mlknobs.data.idx import IDX_DTYPES, parse_idx, read_bytes, read_idx, read_images, read_labels, write_idx
from mlknobs.errors import DataFormatError

NATIVE_DTYPES = [dt.newbyteorder("=") for dt in IDX_DTYPES.values()]
# Hypothesis examples reuse one tmp_path: each example overwrites the same file before reading it.
reusing_tmp_path = settings(max_examples=150, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])


def header(code: int, *dims: int, zero: int = 0) -> bytes:
    return struct.pack(">HBB", zero, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def images_bytes(n: int = 3, rows: int = 4, cols: int = 5) -> bytes:
    return header(0x08, n, rows, cols) + bytes(i % 256 for i in range(n * rows * cols))


def labels_bytes(n: int = 3) -> bytes:
    return header(0x08, n) + bytes(i % 10 for i in range(n))


def header_dims(raw: bytes) -> tuple[int, ...]:
    ndim = raw[3]
    return struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])


def assert_parsed_as_declared(array: np.ndarray, raw: bytes) -> None:
    """A successful parse has exactly the header's dtype and shape, and the payload's values."""
    code, dims = raw[2], header_dims(raw)
    assert array.shape == dims
    assert array.dtype == IDX_DTYPES[code].newbyteorder("=")
    assert array.astype(IDX_DTYPES[code]).tobytes() == raw[4 + 4 * len(dims):]


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", NATIVE_DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 1, 3)], ids=str)
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_then_read_gives_back_the_same_array(tmp_path, dtype, shape, name):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / name

    write_idx(path, array)
    back = read_idx(path)

    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == idx.GZIP_MAGIC) == name.endswith(".gz")


@given(array=hnp.arrays(st.sampled_from(NATIVE_DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       compress=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_round_trip_of_any_array(tmp_path, array, compress):
    path = tmp_path / "any.idx"
    write_idx(path, array, compress=compress)

    back = read_idx(path)

    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()   # bitwise, so NaN payloads and -0.0 count too


def test_images_and_labels_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=6, dtype=np.uint8)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)

    flat = read_images(tmp_path / "images.gz")
    back_labels = read_labels(tmp_path / "labels.gz")

    assert flat.dtype == np.uint8 and flat.shape == (6, 784)
    np.testing.assert_array_equal(flat.reshape(6, 28, 28), images)
    assert back_labels.dtype == np.uint8
    np.testing.assert_array_equal(back_labels, labels)


def test_write_idx_leaves_only_the_file(tmp_path):
    write_idx(tmp_path / "labels.gz", np.arange(5, dtype=np.uint8))
    write_idx(tmp_path / "labels.gz", np.arange(9, dtype=np.uint8))   # replacing works too

    assert [p.name for p in tmp_path.iterdir()] == ["labels.gz"]
    assert len(read_labels(tmp_path / "labels.gz")) == 9


@pytest.mark.parametrize("array", [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool), np.array(5, dtype=np.uint8)],
                         ids=["int64", "bool", "0-d"])
def test_write_idx_refuses_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x.idx", array)
    assert not (tmp_path / "x.idx").exists()


# --- malformed files, one by one ----------------------------------------------------------------

def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def gz_with_bad_crc(data: bytes) -> bytes:
    packed = bytearray(gz(data))
    packed[-8] ^= 0xFF   # the CRC-32 in the gzip trailer
    return bytes(packed)


MALFORMED = [
    # (case, file bytes, reader, words the message must contain)
    ("empty file", b"", read_images, "0 bytes, shorter than a header"),
    ("three bytes", b"\x00\x00\x08", read_labels, "3 bytes, shorter than a header"),
    ("wrong magic", b"\x01\x02\x08\x03" + bytes(12), read_images, "bad magic 0x01020803"),
    ("text file", b"label,pixel0,pixel1\n5,0,0\n", read_labels, "bad magic 0x6c616265"),
    ("unknown dtype code", header(0x0A, 2) + bytes(2), read_idx, "unknown data type code 0x0a"),
    ("zero dimensions", b"\x00\x00\x08\x00", read_idx, "declares 0 dimensions"),
    ("truncated header", header(0x08, 3, 4, 5)[:9], read_images, "truncated IDX header"),
    ("truncated payload", images_bytes()[:-1], read_images, "truncated IDX file"),
    ("header count too large", header(0x08, 5) + bytes(4), read_labels, "header says 5 (5 bytes of data), file holds 4"),
    ("trailing bytes", labels_bytes() + b"\x00", read_labels, "trailing bytes in IDX file"),
    ("header count too small", header(0x08, 2, 4, 5) + bytes(60), read_images, "header says 2 x 4 x 5"),
    ("zero rows", header(0x08, 3, 0, 5), read_images, "declares empty 0 x 5 images"),
    ("zero images", header(0x08, 0, 28, 28), read_images, "holds no images"),
    ("zero labels", header(0x08, 0), read_labels, "holds no labels"),
    ("labels read as images", labels_bytes(), read_images, "not an IDX image file: bad magic 0x00000801"),
    ("images read as labels", images_bytes(), read_labels, "not an IDX label file: bad magic 0x00000803"),
    ("float images", header(0x0D, 1, 2, 2) + bytes(16), read_images, "expected 0x00000803"),
    ("garbage gzip", idx.GZIP_MAGIC + b"\x08\x00" + bytes(range(40)), read_images, "broken gzip data"),
    ("not deflate", idx.GZIP_MAGIC + b"\x07" + bytes(30), read_images, "broken gzip data"),
    ("truncated gzip", gz(images_bytes(20))[:60], read_images, "broken gzip data"),
    ("gzip header only", gz(images_bytes())[:10], read_images, "broken gzip data"),
    ("gzip with bad CRC", gz_with_bad_crc(labels_bytes()), read_labels, "broken gzip data"),
    ("gzip of garbage", gz(b"<html>nope</html>"), read_labels, "bad magic 0x3c68746d"),
    ("gzip of truncated IDX", gz(images_bytes()[:-7]), read_images, "truncated IDX file"),
    ("gzip with trailing garbage", gz(labels_bytes()) + b"junk", read_labels, "broken gzip data"),
]


@pytest.mark.parametrize(("data", "reader", "words"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_file_gives_a_clear_error_naming_it(tmp_path, data, reader, words):
    path = tmp_path / "t10k-odd-ubyte.gz"
    path.write_bytes(data)

    with pytest.raises(DataFormatError) as error:
        reader(path)

    message = str(error.value)
    assert words in message
    assert "t10k-odd-ubyte.gz" in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match=r"cannot read .*nothing\.gz: No such file or directory"):
        read_images(tmp_path / "nothing.gz")


def test_directory_is_a_clear_error(tmp_path):
    folder = tmp_path / "folder.gz"
    folder.mkdir()

    with pytest.raises(DataFormatError, match=r"cannot read .*folder\.gz: Is a directory"):
        read_labels(folder)


def test_file_inflating_beyond_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "MAX_RAW_BYTES", 1000)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gz(header(0x08, 5000) + bytes(5000)))

    with pytest.raises(DataFormatError, match="bomb.gz inflates to more than 1000 bytes"):
        read_labels(path)


def test_parse_idx_names_what_it_was_given():
    with pytest.raises(DataFormatError, match="bad magic 0xffffffff in from-the-network"):
        parse_idx(b"\xff" * 8, "from-the-network")


# --- fuzzing: anything either parses as declared or raises DataFormatError --------------------

idx_like_headers = st.builds(
    lambda zero, code, dims: struct.pack(">HBB", zero, code, len(dims)) + b"".join(struct.pack(">I", d) for d in dims),
    zero=st.sampled_from([0, 0, 0, 1, 0x1F8B]),
    code=st.sampled_from([*IDX_DTYPES, 0x00, 0x0A, 0xFF]),
    dims=st.lists(st.integers(0, 6), max_size=4),
)


@st.composite
def nearly_valid_idx(draw) -> bytes:
    """A well-formed header with a payload of the declared size, or a few bytes off."""
    code = draw(st.sampled_from(list(IDX_DTYPES)))
    dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    size = max(0, IDX_DTYPES[code].itemsize * math.prod(dims) + draw(st.sampled_from([0, 0, 0, -1, 1, 7])))
    return header(code, *dims) + draw(st.binary(min_size=size, max_size=size))


@given(data=st.one_of(st.binary(max_size=300), st.tuples(idx_like_headers, st.binary(max_size=300)).map(b"".join),
                      nearly_valid_idx()))
@settings(max_examples=300, deadline=None)
def test_parse_idx_on_arbitrary_bytes(data):
    try:
        array = parse_idx(data, "fuzz")
    except DataFormatError as e:
        assert "fuzz" in str(e)
        event("rejected")
    else:
        assert_parsed_as_declared(array, data)
        event("parsed")


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """The original with one of: cut short, bytes flipped, bytes inserted, bytes appended."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "append"]))
    if kind == "truncate":
        return original[:draw(st.integers(0, len(original) - 1))]
    if kind == "flip":
        damaged = bytearray(original)
        for position in draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=4)):
            damaged[position] ^= draw(st.integers(1, 255))
        return bytes(damaged)
    position = draw(st.integers(0, len(original))) if kind == "insert" else len(original)
    extra = draw(st.binary(min_size=1, max_size=16))
    return original[:position] + extra + original[position:]


VALID_IMAGES = images_bytes(4, 3, 3)
VALID_LABELS = labels_bytes(6)


@given(data=st.one_of(mutated(VALID_IMAGES), mutated(gz(VALID_IMAGES)), mutated(VALID_LABELS), mutated(gz(VALID_LABELS))))
@reusing_tmp_path
def test_mutated_file_reads_as_declared_or_raises_data_format_error(tmp_path, data):
    path = tmp_path / "mutated.gz"
    path.write_bytes(data)

    try:
        array = read_idx(path)
    except DataFormatError as e:
        assert "mutated.gz" in str(e)
        event("rejected")
    else:
        event("parsed")
        raw = gzip.decompress(data) if data[:2] == idx.GZIP_MAGIC else data
        assert_parsed_as_declared(array, raw)


@given(data=st.one_of(mutated(VALID_IMAGES), mutated(gz(VALID_IMAGES))))
@reusing_tmp_path
def test_mutated_image_file_gives_flat_uint8_images_or_data_format_error(tmp_path, data):
    path = tmp_path / "images.gz"
    path.write_bytes(data)

    try:
        images = read_images(path)
    except DataFormatError as e:
        assert "images.gz" in str(e)
        event("rejected")
        return
    event("parsed")
    raw = gzip.decompress(data) if data[:2] == idx.GZIP_MAGIC else data
    n, rows, cols = header_dims(raw)
    assert images.dtype == np.uint8 and images.shape == (n, rows * cols) and n > 0


@given(data=st.binary(max_size=400).map(lambda tail: idx.GZIP_MAGIC + tail))
@reusing_tmp_path
def test_random_bytes_after_the_gzip_magic_raise_data_format_error(tmp_path, data):
    path = tmp_path / "noise.gz"
    path.write_bytes(data)

    try:
        raw = read_bytes(path)
    except DataFormatError as e:
        assert "noise.gz" in str(e)
        return
    # Hypothesis found a valid gzip stream: then it inflated exactly as zlib says.
    assert raw == gzip.decompress(data)
