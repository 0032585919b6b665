"""Reading an .npz archive with every size checked before the bytes it announces are read.

An .npz is a ZIP archive of .npy entries. A hostile one can list millions of entries, declare an
entry of gigabytes that inflates from a few kilobytes, or hold pickled Python objects. So reading
goes in steps, each bounded by the one before:

    1. the file: a regular file of bounded size, opened by the caller with files.open_regular;
    2. the archive's end record: at most `max_entries` entries in a table of contents of at most
       MAX_ZIP_DIRECTORY_BYTES, no ZIP64 (checked before zipfile builds an object per entry);
    3. an entry's .npy header: version 1.0 or 2.0, no Python objects; its dtype and shape give the
       size of its data, which must be exactly what the archive declares uncompressed;
    4. the data, inflated READ_CHUNK bytes at a time into an array allocated once.

What a file may hold (which entries, which shapes) is the caller's: io/modelfile.py for models.
Every refusal is a ModelFileError naming the file; whatever zipfile or zlib raise on a damaged
archive becomes one too (`open_archive`).
"""

from __future__ import annotations

import math
import os
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from mlknobs.errors import ModelFileError
from mlknobs.files import human_size
from mlknobs.text import error_line, one_line
from mlknobs.text import value_repr as show  # the name io/metadata.py and io/modelfile.py import

MAX_ZIP_DIRECTORY_BYTES = 64 * 2**10  # the archive's table of contents (13 entries take ~1 KB)
READ_CHUNK = 16 * 2**20               # array data is inflated this much at a time
_END_RECORD = struct.Struct("<4s4H2LH")           # zip end of central directory record
_END_SIGNATURE, _ZIP64_LOCATOR_SIGNATURE = b"PK\x05\x06", b"PK\x06\x07"


# --- one line of an error, for messages about a file's contents (a value: show = text.value_repr) -----

def short(error: BaseException) -> str:
    """An exception as one line (text.error_line), except a KeyError, whose message is only the key
    ('format'): "missing 'format'"."""
    if isinstance(error, KeyError) and error.args:
        return one_line(f"missing {error.args[0]!r}")
    return error_line(error)


# --- the archive -------------------------------------------------------------------------------------

@contextmanager
def open_archive(f: BinaryIO, path: Path, max_entries: int, kind: str) -> Iterator[zipfile.ZipFile]:
    """The archive in `f` (a file opened with files.open_regular, step 1), its table of contents
    checked (step 2) and its names each listed once; `kind` names the file in errors.

    Whatever a damaged archive makes zipfile or zlib raise inside the `with` block (an encrypted
    entry: RuntimeError, an unknown compression method: NotImplementedError, ...) becomes a
    ModelFileError, and a MemoryError one that says so.
    """
    if not zipfile.is_zipfile(f):
        raise ModelFileError(f"{path} is not an mlknobs {kind} (not an .npz archive)")
    try:
        _check_directory(f, path, max_entries, kind)
        with zipfile.ZipFile(f) as archive:
            _check_names_once(archive, path)
            yield archive
    except ModelFileError:
        raise
    except MemoryError as e:
        raise ModelFileError(f"{path}: too large to load in the memory available") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
            RuntimeError, NotImplementedError, struct.error, KeyError, IndexError, TypeError) as e:
        raise ModelFileError(f"{path} is not an mlknobs {kind} (unreadable .npz: {short(e)})") from e


def _check_directory(f: BinaryIO, path: Path, max_entries: int, kind: str) -> None:
    """Refuse an archive with more entries than `max_entries`, before zipfile reads them.

    zipfile builds an object for every entry its table of contents lists, and a 1 GiB file can list
    millions. So the end-of-archive record is found the way zipfile finds it (the record without a
    comment at the very end, else the last signature in the final 64 KiB) and its entry count and
    table size are checked. ZIP64 records are refused: numpy writes them only for archives above
    2 GiB, which no model file reaches (see modelfile.MAX_MODEL_FILE_BYTES).
    """
    size = f.seek(0, os.SEEK_END)
    tail_size = min(size, _END_RECORD.size + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    if tail[-_END_RECORD.size:-_END_RECORD.size + 4] == _END_SIGNATURE and tail[-2:] == b"\0\0":
        start = len(tail) - _END_RECORD.size
    else:
        start = tail.rfind(_END_SIGNATURE)
    if start < 0 or start + _END_RECORD.size > len(tail):
        raise ModelFileError(f"{path} is not an mlknobs {kind} (no end of archive record)")
    record_at = size - tail_size + start
    if record_at >= 20:
        f.seek(record_at - 20)
        if f.read(4) == _ZIP64_LOCATOR_SIGNATURE:
            raise ModelFileError(f"{path} is not an mlknobs {kind} (a ZIP64 archive)")
    entries, directory_bytes = _END_RECORD.unpack_from(tail, start)[4:6]
    if entries > max_entries or directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise ModelFileError(f"{path} is not an mlknobs {kind} (its archive lists {entries} entries "
                             f"in {directory_bytes} bytes; a {kind} has at most {max_entries})")


def _check_names_once(archive: zipfile.ZipFile, path: Path) -> None:
    """zipfile keeps the last of two entries of one name: a file holding both is ambiguous."""
    names = archive.namelist()
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ModelFileError(f"{path}: the archive holds {', '.join(map(show, twice))} more than once")


# --- one .npy entry ------------------------------------------------------------------------------------

@dataclass
class Entry:
    """An .npy entry whose header has been read and checked (step 3), its data not yet."""

    info: zipfile.ZipInfo
    name: str                   # without .npy, as messages name it
    dtype: np.dtype
    shape: tuple
    fortran_order: bool
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)

    def check_declared_size(self, path: Path) -> None:
        """The archive's uncompressed size must be exactly header + data: no more is ever inflated."""
        if self.info.file_size != self.header_bytes + self.data_bytes:
            raise ModelFileError(f"{path}: entry {self.name} is {self.info.file_size} bytes uncompressed, but "
                                 f"its header announces {self.header_bytes + self.data_bytes}; the file is damaged")

    def read_into(self, archive: zipfile.ZipFile, out: memoryview, path: Path) -> None:
        """Fill `out` (data_bytes long) with the entry's data, READ_CHUNK at a time (step 4)."""
        self.check_declared_size(path)
        with archive.open(self.info) as f:
            f.read(self.header_bytes)
            done = 0
            while done < len(out):
                n = f.readinto(out[done:done + READ_CHUNK])
                if not n:
                    raise ModelFileError(f"{path}: entry {self.name} is truncated")
                done += n
            if f.read(1):
                raise ModelFileError(f"{path}: entry {self.name} holds more data than its header announces")

    def read_array(self, archive: zipfile.ZipFile, path: Path) -> np.ndarray:
        """The entry's array, in native byte order, filled in place (no second full-size copy)."""
        array = np.empty(math.prod(self.shape), self.dtype)                     # flat
        self.read_into(archive, memoryview(array).cast("B"), path)
        if self.fortran_order:
            array = array.reshape(self.shape[::-1]).T
        return array.reshape(self.shape).astype(self.dtype.newbyteorder("="), copy=False)

    def read_text(self, archive: zipfile.ZipFile, max_bytes: int, path: Path) -> str:
        """A 0-d unicode entry of at most `max_bytes` (stored as UTF-32) as text."""
        if self.dtype.kind != "U" or self.shape != ():
            raise ModelFileError(f"{path}: {self.name} is not text (a {self.dtype.name} array of shape "
                                 f"{self.shape})")
        if self.dtype.itemsize > max_bytes:
            raise ModelFileError(f"{path}: {self.name} is {human_size(self.dtype.itemsize)}, more than the "
                                 f"{human_size(max_bytes)} a model file may hold")
        raw = bytearray(self.dtype.itemsize)
        self.read_into(archive, memoryview(raw), path)
        big_endian = self.dtype.byteorder == ">" or (self.dtype.byteorder == "=" and sys.byteorder == "big")
        try:   # the codec refuses surrogates and code points beyond U+10FFFF
            return raw.decode("utf-32-be" if big_endian else "utf-32-le").rstrip("\0")
        except UnicodeDecodeError as e:
            raise ModelFileError(f"{path}: {self.name} is not valid Unicode text ({short(e)})") from e


def open_entry(archive: zipfile.ZipFile, name: str, path: Path) -> Entry:
    """The entry `name`.npy with its header read and checked, its data not read."""
    info = archive.getinfo(name + ".npy")
    with archive.open(info) as f:
        dtype, shape, fortran_order = _read_header(f, name, path)
        return Entry(info, name, dtype, shape, fortran_order, f.tell())


def _read_header(f: BinaryIO, name: str, path: Path) -> tuple[np.dtype, tuple, bool]:
    """(dtype, shape, fortran_order) from an .npy entry's header, the data not read yet."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{path}: entry {name} is .npy format version {version}, "
                                 f"expected 1.0 or 2.0")
    except ModelFileError:
        raise
    except (ValueError, SyntaxError, TypeError, EOFError) as e:
        raise ModelFileError(f"{path}: entry {name} is not a NumPy array ({short(e)})") from e
    if dtype.hasobject:
        raise ModelFileError(f"{path}: entry {name} holds Python objects (pickled data), "
                             f"which mlknobs never loads")
    return dtype, shape, fortran_order
