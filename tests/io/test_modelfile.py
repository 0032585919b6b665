"""Model files: atomic, versioned, validated, never pickled."""

import json
import zipfile

import numpy as np
import pytest

from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError
from mlknobs.nn.model import InputScaling, Params
from mlknobs.io.modelfile import FORMAT_VERSION, Model, load_checkpoint, load_model, save_checkpoint, save_model


def a_model(hidden: int = 8) -> Model:
    params = Params.initial(hidden, np.random.default_rng(0))
    return Model(params, TrainConfig(hidden_size=hidden), InputScaling(0.13, 0.31), [str(i) for i in range(10)],
                 history=[{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}], results={"test_accuracy": 0.9, "test_loss": 0.3})


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
    with pytest.raises(ModelFileError, match="mlknobs train"):
        load_model(tmp_path / "absent.npz")
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
