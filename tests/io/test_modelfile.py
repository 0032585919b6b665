"""Model files: atomic, versioned, validated, never pickled; hostile files refused, bounded in time and memory."""

import io
import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError, ModelFileMissing
from mlknobs.io import modelfile
from mlknobs.io.modelfile import FORMAT_VERSION, Model, load_checkpoint, load_model, save_checkpoint, save_model
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


def test_round_trip_keeps_weights_knobs_scaling_history_and_results(tmp_path):
    path = tmp_path / "m.npz"
    model = a_model()
    save_model(path, model)
    loaded = load_model(path)
    for name, array in model.params.arrays().items():
        np.testing.assert_array_equal(getattr(loaded.params, name), array)
    assert loaded.config == model.config and loaded.scaling == model.scaling
    assert loaded.history == model.history and loaded.results["test_accuracy"] == 0.9
    assert loaded.meta["format_version"] == FORMAT_VERSION and loaded.meta["dataset"] == "mnist"
    assert loaded.meta["architecture"]["hidden_size"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]     # no temp file left behind


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    before = path.read_bytes()

    def exploding_savez(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, a_model(16))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("breakage, message", [
    (lambda m, a: m.update(format_version=99), "format version 99"),
    (lambda m, a: m.update(format="something-else"), "not an mlknobs model file"),
    (lambda m, a: m.pop("input_scaling"), "metadata is incomplete"),
    (lambda m, a: a.update(w1=a["w1"][:, :3]), "shape"),
    (lambda m, a: a.update(b2=a["b2"].astype(np.float64)), "float64"),
    (lambda m, a: a["w2"].__setitem__((0, 0), np.nan), "non-finite"),
    (lambda m, a: a.pop("b1"), "missing arrays b1"),
    (lambda m, a: m["config"].update(hidden_size=9), "hidden units"),
    (lambda m, a: m.update(history=[{"epoch": 1}]), "history entry"),
    (lambda m, a: m.update(dataset="fashion-mnist"), "disagrees"),
])
def test_inconsistent_files_are_refused_with_a_clear_message(tmp_path, breakage, message):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    state = {}

    def change_meta(meta):
        state["meta"] = meta

    def change_arrays(arrays):
        breakage(state["meta"], arrays)

    rewrite(path, change_meta, change_arrays)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_missing_garbage_and_pickled_files_are_refused(tmp_path):
    with pytest.raises(ModelFileMissing, match="no model file at .*absent.npz") as caught:
        load_model(tmp_path / "absent.npz")
    assert caught.value.path == tmp_path / "absent.npz"
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(ModelFileMissing):
        load_model(tmp_path / "dangling.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="not an mlknobs model file"):
        load_model(garbage)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, metadata=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ModelFileError):
        load_model(pickled)
    with pytest.raises(ModelFileError, match="directory"):
        load_model(tmp_path)
    empty_zip = tmp_path / "empty.npz"
    with zipfile.ZipFile(empty_zip, "w"):
        pass
    with pytest.raises(ModelFileError, match="no metadata"):
        load_model(empty_zip)


def test_checkpoint_round_trip_and_a_model_is_not_a_checkpoint(tmp_path):
    model = a_model()
    velocity = model.params.zeros_like()
    velocity.w1 += 0.5
    rng_state = np.random.default_rng(0).bit_generator.state
    save_checkpoint(tmp_path / "c.npz", model, velocity, {"loop": {"epochs_done": 1}, "rng": rng_state},
                    best=model.params.copy())
    checkpoint = load_checkpoint(tmp_path / "c.npz")
    assert checkpoint.state["loop"]["epochs_done"] == 1
    np.testing.assert_array_equal(checkpoint.velocity.w1, velocity.w1)
    assert checkpoint.best is not None
    save_model(tmp_path / "m.npz", model)
    with pytest.raises(ModelFileError, match="not a resumable checkpoint"):
        load_checkpoint(tmp_path / "m.npz")


@pytest.mark.parametrize("state, message", [
    ({}, "loop"),
    ({"loop": {"epochs_done": 1}, "rng": {"bit_generator": "nonsense"}}, "state"),
    ({"loop": {"epochs_done": "1"}, "rng": None}, "number"),
    ({"loop": {"epochs_done": 7}, "rng": None}, "outside 0..3"),
])
def test_damaged_checkpoint_state_is_refused(tmp_path, state, message):
    model = a_model()
    if state.get("rng", 0) is None:
        state["rng"] = np.random.default_rng(0).bit_generator.state
    save_checkpoint(tmp_path / "c.npz", model, model.params.zeros_like(), state)
    with pytest.raises(ModelFileError, match=message):
        load_checkpoint(tmp_path / "c.npz")


def test_a_plain_npy_or_text_file_is_not_a_model(tmp_path):
    npy = tmp_path / "array.npz"
    np.save(npy.with_suffix(".npy"), np.zeros(3))
    npy.with_suffix(".npy").rename(npy)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    for path in (npy, text):
        with pytest.raises(ModelFileError, match="not an .npz archive"):
            load_model(path)


def test_saving_into_a_missing_folder_is_a_clear_error(tmp_path):
    from mlknobs.errors import OutputError

    with pytest.raises(OutputError, match="does not exist"):
        save_model(tmp_path / "nope" / "m.npz", a_model())


# --- hostile files: everything bounded, everything checked before it is read ----------------------

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


# 1. Files that never end

@pytest.mark.parametrize("make, word", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: p.symlink_to("/dev/zero"), "character device"),
    (lambda p: p.symlink_to("/dev/urandom"), "character device"),
    (lambda p: p.mkdir(), "directory"),
])
@pytest.mark.parametrize("load", [load_model, load_checkpoint])
def test_a_model_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, no_hang, make, word, load):
    path = tmp_path / "model.npz"
    make(path)
    with pytest.raises(ModelFileError, match=word) as caught:
        load(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_symlink_loop_or_a_nul_byte_is_a_model_file_error(tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    for path in (loop, tmp_path / "nul\0.npz"):
        with pytest.raises(ModelFileError, match="cannot open"):
            load_model(path)


def test_a_model_file_above_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "huge.npz"
    with open(path, "wb") as f:
        f.truncate(modelfile.MAX_MODEL_FILE_BYTES + 1)      # sparse: takes no disk
    with pytest.raises(ModelFileError, match=r"too large for a model file \(limit 1 GiB\)"):
        load_model(path)


def test_the_size_limit_holds_the_largest_checkpoint():
    from mlknobs.config import MAX_HIDDEN_SIZE

    knobs = 4 * ((784 + 1 + 10) * MAX_HIDDEN_SIZE + 10)
    assert 3 * knobs + modelfile.MAX_METADATA_BYTES < modelfile.MAX_MODEL_FILE_BYTES


# 2. Archives that inflate

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


def test_entries_a_model_does_not_use_are_not_read(tmp_path):
    path = a_checkpoint(tmp_path / "c.npz")
    declare_size(path, "velocity_w1.npy", 3 * 2**30)
    assert load_model(path).params.hidden_size == 8          # the weights only: velocity never opened
    with pytest.raises(ModelFileError, match="velocity_w1 is 3221225472 bytes"):
        load_checkpoint(path)


def test_unknown_entries_are_refused_by_name(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    entries = entries_of(path)
    write_entries(path, {**entries, "extra.npy": npy_bytes(np.zeros(3)), "notes.txt": b"hi"})
    with pytest.raises(ModelFileError, match="unknown entries 'extra.npy', 'notes.txt'"):
        load_model(path)


def test_a_finished_model_with_optimizer_entries_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    entries = entries_of(path)
    write_entries(path, {**entries, "velocity_w1.npy": entries["w1.npy"]})
    with pytest.raises(ModelFileError, match="a finished model holds no velocity_w1.npy"):
        load_model(path)


def test_a_checkpoint_with_part_of_a_set_is_refused(tmp_path):
    path = a_checkpoint(tmp_path / "c.npz")
    entries = entries_of(path)
    del entries["best_b1.npy"]
    write_entries(path, entries)
    with pytest.raises(ModelFileError, match="missing arrays best_b1"):
        load_checkpoint(path)


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


# 3. Metadata JSON

def test_deeply_nested_metadata_is_one_clear_error(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    text = meta_text(path)
    set_meta_text(path, text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelFileError, match="nests too deeply"):
        load_model(path)
    set_meta_text(path, text[:-1] + ', "deep": ' + "[" * 40 + "]" * 40 + "}")
    with pytest.raises(ModelFileError, match="nests deeper than 32 levels"):
        load_model(path)


@pytest.mark.parametrize("names, message", [
    (["\udc80"] + [str(i) for i in range(1, 10)], "lone surrogate"),
    ([str(i) for i in range(9)], "list of 10 names, not 9"),
    ([str(i) for i in range(11)], "list of 10 names, not 11"),
    ([""] + [str(i) for i in range(1, 10)], "class name 0"),
    (["   "] + [str(i) for i in range(1, 10)], "class name 0"),
    (["x" * 101] + [str(i) for i in range(1, 10)], "class name 0"),
    ([3] + [str(i) for i in range(1, 10)], "class name 0"),
    ("0123456789", "list of 10 names"),
])
def test_bad_class_names_are_refused(tmp_path, names, message):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    edit_meta(path, lambda meta: meta.update(class_names=names))
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_lone_surrogate_anywhere_in_the_metadata_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    edit_meta(path, lambda meta: meta.update(created="2024\ud800"))
    with pytest.raises(ModelFileError, match="metadata\\['created'\\] is not valid Unicode"):
        load_model(path)


@pytest.mark.parametrize("code_point", [0xDC80, 0x110000])
def test_invalid_code_points_in_the_stored_text_are_refused(tmp_path, code_point):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    text = meta_text(path)
    raw = np.array(text).tobytes() + struct.pack("<I", code_point)
    write_entries(path, {**entries_of(path), "metadata.npy": npy_header(f"<U{len(text) + 1}", ()) + raw})
    with pytest.raises(ModelFileError, match="not valid Unicode text"):
        load_model(path)


def test_control_characters_in_class_names_load(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    names = ["zero\x1b[31m", "one\nline"] + [str(i) for i in range(2, 10)]
    edit_meta(path, lambda meta: meta.update(class_names=names))
    assert load_model(path).class_names == names            # the CLI escapes them when printing


# 4. Input scaling

@pytest.mark.parametrize("scaling", [
    {"mean": 0.13, "std": 1e-300}, {"mean": 1e300, "std": 0.31}, {"mean": -0.1, "std": 0.31},
    {"mean": 0.13, "std": 0.6}, {"mean": 0.13, "std": "0.31"}, {"mean": 0.13, "std": True},
    {"mean": 0.13}, [0.13, 0.31],
])
def test_input_scaling_that_makes_no_sense_is_refused(tmp_path, scaling):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    edit_meta(path, lambda meta: meta.update(input_scaling=scaling))
    with pytest.raises(ModelFileError, match="input"):
        load_model(path)


# 5. Numbers: never NaN or infinite, each in its range

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_non_finite_numbers_in_metadata_are_refused(tmp_path, literal):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    text = meta_text(path)
    assert '"test_accuracy": 0.9' in text
    set_meta_text(path, text.replace('"test_accuracy": 0.9', f'"test_accuracy": {literal}'))
    with pytest.raises(ModelFileError, match="metadata is not valid JSON"):
        load_model(path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(test_accuracy=1.5), "test_accuracy 1.5 is outside"),
    (lambda m: m.update(test_loss=-1), "test_loss -1 is outside"),
    (lambda m: m.update(test_loss="low"), "test_loss must be a number"),
    (lambda m: m.update(seconds=-3.0), "seconds"),
    (lambda m: m.update(stopped_early="yes"), "stopped_early"),
    (lambda m: m.update(best_epoch=99), "best_epoch 99 is outside 0..3"),
    (lambda m: m["history"][0].update(train_accuracy=2), "train_accuracy 2 is outside"),
    (lambda m: m["history"][0].update(train_loss=-0.5), "train_loss"),
    (lambda m: m["history"][0].update(learning_rate="fast"), "learning_rate"),
    (lambda m: m["history"][0].update(epoch=2), "history entry 1 is for epoch 2"),
    (lambda m: m.update(history=m["history"] * 4), "history holds 4 epochs"),
    (lambda m: m.update(format_version=True), "format version True"),
    (lambda m: m.update(kind="weights"), "kind 'weights'"),
    (lambda m: m.update(config=[1, 2]), "config must be an object"),
    (lambda m: m["config"].update(epochs=True), "epochs"),
])
def test_out_of_range_metadata_is_refused(tmp_path, change, message):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    edit_meta(path, change)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


def test_a_checkpoint_with_every_loop_number_loads(tmp_path):
    loop = {"epochs_done": 1, "step": 469, "seconds": 12.5, "best_epoch": 1, "best_val_accuracy": 0.97,
            "best_val_loss": 0.1, "epochs_without_improvement": 0}
    checkpoint = load_checkpoint(a_checkpoint(tmp_path / "c.npz", loop=loop))
    assert checkpoint.state["loop"] == loop and checkpoint.best is not None


@pytest.mark.parametrize("loop, message", [
    ({"epochs_done": 1, "step": -1}, "step -1 is outside"),
    ({"epochs_done": 1, "step": 10**12}, "step 1000000000000 is outside"),
    ({"epochs_done": 1, "step": 4.5}, "step must be a whole number"),
    ({"epochs_done": True}, "epochs_done must be a whole number"),
    ({"epochs_done": 1, "seconds": -1.0}, "seconds -1.0 is outside"),
    ({"epochs_done": 1, "best_epoch": 2}, "best_epoch 2 is outside 0..1"),
    ({"epochs_done": 1, "best_val_accuracy": 1.5}, "best_val_accuracy 1.5"),
    ({"epochs_done": 1, "best_val_loss": -0.1}, "best_val_loss"),
    ({"epochs_done": 1, "epochs_without_improvement": 5}, "epochs_without_improvement 5"),
    ({"epochs_done": 1, "momentum_trick": 1}, "unknown loop state entries 'momentum_trick'"),
    ({"epochs_done": 0}, "epochs_done is 0 but the history holds 1 epochs"),
    ({}, "missing 'epochs_done'"),
])
def test_checkpoint_loop_state_out_of_range_is_refused(tmp_path, loop, message):
    path = a_checkpoint(tmp_path / "c.npz", loop=loop)
    with pytest.raises(ModelFileError, match=f"checkpoint state is incomplete or invalid .*{message}"):
        load_checkpoint(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_checkpoint_holding_nan_is_refused_before_any_training(tmp_path, literal):
    path = a_checkpoint(tmp_path / "c.npz")
    text = meta_text(path)
    assert '"seconds": 1.5' in text
    set_meta_text(path, text.replace('"seconds": 1.5', f'"seconds": {literal}'))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_checkpoint(path)


def good_rng() -> dict:
    return np.random.default_rng(0).bit_generator.state


@pytest.mark.parametrize("change, message", [
    (lambda r: r["state"].update(state=2**200), "rng state .* is outside"),
    (lambda r: r["state"].update(inc=-1), "rng inc -1 is outside"),
    (lambda r: r["state"].update(state=1.5), "rng state must be a whole number"),
    (lambda r: r.update(has_uint32=2), "has_uint32"),
    (lambda r: r.update(uinteger=2**40), "uinteger"),
    (lambda r: r.pop("uinteger"), "rng must hold"),
    (lambda r: r.update(bit_generator="MT19937"), "PCG64"),
])
def test_a_damaged_rng_state_is_refused(tmp_path, change, message):
    rng = good_rng()
    change(rng)
    path = a_checkpoint(tmp_path / "c.npz", rng=rng)
    with pytest.raises(ModelFileError, match=message):
        load_checkpoint(path)


def test_a_huge_rng_integer_written_by_hand_is_refused_not_an_overflow(tmp_path):
    path = a_checkpoint(tmp_path / "c.npz")
    edit_meta(path, lambda meta: meta["state"]["rng"]["state"].update(inc=10**300))
    with pytest.raises(ModelFileError, match="rng inc"):
        load_checkpoint(path)


def test_unknown_state_entries_are_refused(tmp_path):
    path = a_checkpoint(tmp_path / "c.npz")
    edit_meta(path, lambda meta: meta["state"].update(extra=1))
    with pytest.raises(ModelFileError, match="unknown state entries 'extra'"):
        load_checkpoint(path)


def test_saving_over_a_fifo_or_device_is_refused(tmp_path, no_hang):
    from mlknobs.errors import OutputError

    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        save_model(fifo, a_model())
    link = tmp_path / "null.npz"
    link.symlink_to("/dev/null")
    with pytest.raises(OutputError, match="character device"):
        save_model(link, a_model())
    assert link.is_symlink() and os.path.realpath(link) == "/dev/null"
