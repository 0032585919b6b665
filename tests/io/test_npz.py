"""The bounded .npz reader (io/npz.py): every size checked before the bytes it announces are read."""

import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from modelfiles import a_model, declare_size, entries_of, meta_text, npy_bytes, npy_header, write_entries

from mlknobs.errors import ModelFileError
from mlknobs.io.modelfile import load_model, save_model


def test_an_entry_whose_header_claims_gigabytes_is_refused_before_inflating(tmp_path):
    """A 3 MB file whose w1 would inflate to 3 GB: refused from its 128-byte header."""
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    entries = entries_of(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if name != "w1.npy":
                archive.writestr(name, data)
        with archive.open("w1.npy", "w", force_zip64=True) as w1:
            w1.write(npy_header("<f4", (784, 1_000_000)))
            zeros = bytes(2**20)
            for _ in range(32):                               # 32 MiB of zeros: ~32 KB compressed
                w1.write(zeros)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="1000000 hidden units, more than the 65536"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_a_declared_size_that_disagrees_with_the_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    declare_size(path, "w1.npy", 3 * 2**30)                 # "inflates to 3 GiB"
    with pytest.raises(ModelFileError, match=r"w1 is 3221225472 bytes uncompressed, but its header announces 25216"):
        load_model(path)
    save_model(path, a_model())
    declare_size(path, "b2.npy", 1000)                       # longer than its header says
    with pytest.raises(ModelFileError, match="b2 is 1000 bytes uncompressed, but its header announces 168"):
        load_model(path)
    save_model(path, a_model())
    declare_size(path, "b2.npy", 100)                        # shorter: the header itself is cut off
    with pytest.raises(ModelFileError, match="b2"):
        load_model(path)


@pytest.mark.parametrize("metadata, message", [
    (npy_header("<U20000000", ()), "metadata is 76.29 MiB, more than the 64 MiB"),
    (npy_header("<U1000000000", ()), "not a NumPy array"),
    (npy_bytes(np.array(["{}", "{}"])), "metadata is not text"),
    (npy_bytes(np.zeros(3)), "metadata is not text"),
    (npy_header("|O", ()), "Python objects"),
    (b"\x93NUMPY\x09\x00", r"format version \(9, 0\)"),
    (b"not an array at all", "not a NumPy array"),
])
def test_a_bad_metadata_entry_is_refused_from_its_header(tmp_path, metadata, message):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    write_entries(path, {**entries_of(path), "metadata.npy": metadata})
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_pickled_weights_are_refused_unread(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    write_entries(path, {**entries_of(path), "w1.npy": npy_header("|O", (784, 8)) + b"\x80\x04evil"})
    with pytest.raises(ModelFileError, match="w1 holds Python objects"):
        load_model(path)


def test_duplicate_and_too_many_entries_are_refused(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    entries = entries_of(path)
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("w1.npy", entries["w1.npy"])        # a second w1 (zipfile reads the last)
    with pytest.raises(ModelFileError, match="'w1.npy' more than once"):
        load_model(path)
    write_entries(path, {**entries, **{f"x{i}.npy": b"" for i in range(20)}})
    with pytest.raises(ModelFileError, match="lists 25 entries"):
        load_model(path)


def test_a_zip64_end_record_is_refused_before_zipfile_reads_its_directory(tmp_path):
    """ZIP64 records could announce a table of contents of any size; no model file needs them."""
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    path.write_bytes(data[:end] + b"PK\x06\x07" + bytes(16) + data[end:])
    with pytest.raises(ModelFileError, match="ZIP64"):
        load_model(path)


def test_compressed_big_endian_and_fortran_order_files_still_load(tmp_path):
    path = tmp_path / "m.npz"
    model = a_model()
    save_model(path, model)
    entries = entries_of(path)
    entries["w1.npy"] = npy_bytes(np.asfortranarray(model.params.w1))
    entries["w2.npy"] = npy_bytes(model.params.w2.astype(">f4"))
    write_entries(path, entries, zipfile.ZIP_DEFLATED)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.params.w1, model.params.w1)
    np.testing.assert_array_equal(loaded.params.w2, model.params.w2)


@pytest.mark.parametrize("code_point", [0xDC80, 0x110000])
def test_invalid_code_points_in_the_stored_text_are_refused(tmp_path, code_point):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    text = meta_text(path)
    raw = np.array(text).tobytes() + struct.pack("<I", code_point)
    write_entries(path, {**entries_of(path), "metadata.npy": npy_header(f"<U{len(text) + 1}", ()) + raw})
    with pytest.raises(ModelFileError, match="not valid Unicode text"):
        load_model(path)



# The reader on its own: any .npz, no model semantics

def bare_archive(path, arrays: dict[str, np.ndarray], compression=zipfile.ZIP_STORED):
    write_entries(path, {f"{name}.npy": npy_bytes(array) for name, array in arrays.items()}, compression)
    return path


def test_the_reader_gives_native_arrays_from_any_byte_order_and_layout(tmp_path):
    from mlknobs.io.npz import open_archive, open_entry

    wide = np.arange(12, dtype=">f8").reshape(3, 4)
    path = bare_archive(tmp_path / "a.npz", {"big": wide, "fortran": np.asfortranarray(wide.astype("<i2"))},
                        zipfile.ZIP_DEFLATED)
    with open(path, "rb") as f, open_archive(f, path, max_entries=2, kind="test file") as archive:
        big, fortran = (open_entry(archive, name, path).read_array(archive, path) for name in ("big", "fortran"))
    assert big.dtype == np.float64 and big.dtype.isnative and fortran.dtype == np.int16
    np.testing.assert_array_equal(big, wide)
    np.testing.assert_array_equal(fortran, wide)


def test_the_entry_count_is_the_callers_limit(tmp_path):
    from mlknobs.io.npz import open_archive

    path = bare_archive(tmp_path / "a.npz", {f"x{i}": np.zeros(1) for i in range(3)})
    with open(path, "rb") as f, pytest.raises(ModelFileError, match="lists 3 entries .* a test file has at most 2"):
        with open_archive(f, path, max_entries=2, kind="test file"):
            pass


def patch_entry_headers(path, offset: int, value: int) -> None:
    """Set a 16-bit field at `offset` of every local header (PK\\x03\\x04) and of every entry of the
    table of contents (PK\\x01\\x02, where the same field sits 2 bytes further)."""
    data = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", offset), (b"PK\x01\x02", offset + 2)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            struct.pack_into("<H", data, start + at, value)
            start += 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset, value, raised", [
    (8, 99, NotImplementedError),       # an unknown compression method
    (6, 1, RuntimeError),               # the encryption flag
    (8, 12, OSError),                   # bzip2 announced on deflated data
])
def test_whatever_zipfile_raises_on_a_damaged_entry_is_one_model_file_error(tmp_path, offset, value, raised):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    write_entries(path, entries_of(path), zipfile.ZIP_DEFLATED)
    patch_entry_headers(path, offset, value)
    with pytest.raises(ModelFileError, match=r"m\.npz is not an mlknobs model file \(unreadable \.npz: ") as caught:
        load_model(path)
    assert isinstance(caught.value.__cause__, raised) and "\n" not in str(caught.value)
