"""Small model files and the tools to damage them, for the tests of io/ (npz.py, metadata.py, modelfile.py)."""

import io
import json
import struct
import zipfile

import numpy as np

from mlknobs.config import TrainConfig
from mlknobs.io.modelfile import Model, save_checkpoint
from mlknobs.nn.model import InputScaling, Params


def a_model(hidden: int = 8) -> Model:
    params = Params.initial(hidden, np.random.default_rng(0))
    return Model(params, TrainConfig(hidden_size=hidden), InputScaling(0.13, 0.31), [str(i) for i in range(10)],
                 history=[{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}],
                 results={"test_accuracy": 0.9, "test_loss": 0.3})


def rewrite(path, meta_change=None, arrays_change=None):
    """Rewrite an existing model file with some metadata or arrays changed."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("metadata")))
    if meta_change:
        meta_change(meta)
    if arrays_change:
        arrays_change(arrays)
    np.savez(path, metadata=np.array(json.dumps(meta)), **arrays)


def a_checkpoint(path, best=True, loop=None, rng=None):
    model = a_model()
    state = {"loop": loop if loop is not None else {"epochs_done": 1, "step": 4, "seconds": 1.5},
             "rng": rng if rng is not None else np.random.default_rng(0).bit_generator.state}
    save_checkpoint(path, model, model.params.zeros_like(), state, best=model.params.copy() if best else None)
    return path


def entries_of(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_entries(path, entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def npy_header(descr: str, shape: tuple, fortran_order: bool = False) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return out.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def meta_text(path) -> str:
    with np.load(path, allow_pickle=False) as npz:
        return str(npz["metadata"])


def set_meta_text(path, text: str) -> None:
    entries = entries_of(path)
    entries["metadata.npy"] = npy_bytes(np.array(text))
    write_entries(path, entries)


def edit_meta(path, change) -> None:
    meta = json.loads(meta_text(path))
    change(meta)
    set_meta_text(path, json.dumps(meta))


def declare_size(path, entry: str, size: int) -> None:
    """Patch the archive's table of contents to claim `size` uncompressed bytes for `entry`."""
    data = bytearray(path.read_bytes())
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_length] == entry.encode():
            struct.pack_into("<L", data, at + 24, size)
            break
        at += 4
    path.write_bytes(bytes(data))


def good_rng() -> dict:
    return np.random.default_rng(0).bit_generator.state

