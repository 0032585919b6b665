"""Read IDX files (the MNIST container format), gzip-compressed or raw, and check every field.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the payload in C order. MNIST images are magic 0x00000803 (uint8, 3-D: N x 28 x 28)
and labels 0x00000801 (uint8, 1-D: N).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from mlknobs.errors import DataFormatError
from mlknobs.files import atomic_write

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# IDX dtype code -> big-endian NumPy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
# Refuse to inflate more than this: the largest real file (MNIST train images) is 47 MB raw.
MAX_RAW_BYTES = 1 << 30


def read_bytes(path: Path) -> bytes:
    """The file's IDX bytes: inflated if it starts with the gzip magic, as-is otherwise."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataFormatError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        try:
            head = f.read(2)
            f.seek(0)
            if head != GZIP_MAGIC:
                data = f.read(MAX_RAW_BYTES + 1)
            else:
                with gzip.GzipFile(fileobj=f) as gz:
                    data = gz.read(MAX_RAW_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            # gzip.BadGzipFile is an OSError; a cut-off stream raises EOFError.
            raise DataFormatError(f"cannot read {path.name}: broken gzip data ({e or type(e).__name__})") from e
    if len(data) > MAX_RAW_BYTES:
        raise DataFormatError(f"not an IDX file: {path.name} inflates to more than {MAX_RAW_BYTES} bytes")
    return data


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the declared dtype (native byte order) and shape."""
    if len(data) < 4:
        raise DataFormatError(f"not an IDX file: {name} is {len(data)} bytes, shorter than a header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if zero != 0:
        raise DataFormatError(f"not an IDX file: bad magic 0x{magic:08x} in {name}")
    if code not in IDX_DTYPES:
        raise DataFormatError(f"not an IDX file: unknown data type code 0x{code:02x} in {name} "
                              f"(magic 0x{magic:08x})")
    if ndim == 0:
        raise DataFormatError(f"not an IDX file: {name} declares 0 dimensions (magic 0x{magic:08x})")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFormatError(f"truncated IDX header in {name}: {ndim} dimensions need {header_size} bytes, "
                              f"file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    payload = len(data) - header_size
    if payload != expected:
        shape = " x ".join(map(str, dims))
        what = "truncated" if payload < expected else "trailing bytes in"
        raise DataFormatError(f"{what} IDX file {name}: header says {shape} ({expected} bytes of data), "
                              f"file holds {payload}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path) -> np.ndarray:
    """Any IDX file (gzip or raw) as an array of its declared dtype and shape."""
    path = Path(path)
    return parse_idx(read_bytes(path), path.name)


def _read_expecting(path: Path, magic: int, kind: str) -> np.ndarray:
    path = Path(path)
    data = read_bytes(path)
    if len(data) >= 4 and int.from_bytes(data[:4], "big") != magic:
        raise DataFormatError(f"not an IDX {kind} file: bad magic 0x{int.from_bytes(data[:4], 'big'):08x} "
                              f"in {path.name} (expected 0x{magic:08x})")
    return parse_idx(data, path.name)


def read_images(path: Path) -> np.ndarray:
    """Images as uint8 (N, rows * cols), one flattened image per row."""
    array = _read_expecting(path, IMAGES_MAGIC, "image")
    n, rows, cols = array.shape
    if rows == 0 or cols == 0:
        raise DataFormatError(f"IDX image file {Path(path).name} declares empty {rows} x {cols} images")
    if n == 0:
        raise DataFormatError(f"IDX image file {Path(path).name} holds no images")
    return array.reshape(n, rows * cols)


def read_labels(path: Path) -> np.ndarray:
    """Labels as uint8 (N,)."""
    array = _read_expecting(path, LABELS_MAGIC, "label")
    if len(array) == 0:
        raise DataFormatError(f"IDX label file {Path(path).name} holds no labels")
    return array


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write an array as IDX (gzip when the name ends in .gz), atomically. Used by tests and tools."""
    path = Path(path)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    array = np.asarray(array)
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, not {array.ndim}")
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX has no code for dtype {array.dtype}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(IDX_DTYPES[code], copy=False).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    # Level 6 (gzip's own default): 15x faster than 9 on digit images, for files 5 % larger.
    payload = gzip.compress(data, compresslevel=6, mtime=0) if compress else data
    atomic_write(path, lambda f: f.write(payload))
