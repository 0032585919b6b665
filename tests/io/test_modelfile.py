"""Model files: atomic, versioned, validated, never pickled; hostile files refused, bounded in time and memory.

The archive reader has its own tests (test_npz.py), and so has the metadata (test_metadata.py).
"""

import os
import zipfile

import numpy as np
import pytest
from modelfiles import a_checkpoint, a_model, declare_size, entries_of, npy_bytes, rewrite, write_entries

from mlknobs.errors import ModelFileError, ModelFileMissing
from mlknobs.io import modelfile
from mlknobs.io.modelfile import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint, save_model


def test_round_trip_keeps_weights_settings_scaling_history_and_results(tmp_path):
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

    knob_bytes = 4 * ((784 + 1 + 10) * MAX_HIDDEN_SIZE + 10)     # float32 weights and biases
    assert 3 * knob_bytes + modelfile.MAX_METADATA_BYTES < modelfile.MAX_MODEL_FILE_BYTES


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



def test_the_digest_is_of_the_bytes_loaded(tmp_path):
    import hashlib

    path = tmp_path / "m.npz"
    save_model(path, a_model())
    model, digest = modelfile.load_model_and_sha256(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.params.hidden_size == 8


def test_a_file_that_grows_while_it_is_hashed_is_refused(tmp_path, monkeypatch):
    """The digest covers exactly the size found on the open descriptor; a writer appending meanwhile is caught."""
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    monkeypatch.setattr(modelfile, "HASH_CHUNK", 1024)
    opened = modelfile.open_regular

    class Growing:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            with open(path, "ab") as writer:                # another process appending
                writer.write(b"x" * 10)
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(modelfile, "open_regular", lambda *a, **k: Growing(opened(*a, **k)))
    with pytest.raises(ModelFileError, match="changed while it was being read"):
        modelfile.load_model_and_sha256(path)
