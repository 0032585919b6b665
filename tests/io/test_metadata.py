"""Model file metadata (io/metadata.py): valid JSON of our format, every field checked, every number in range."""

import numpy as np
import pytest
from modelfiles import a_checkpoint, a_model, edit_meta, good_rng, meta_text, set_meta_text

from mlknobs.errors import ModelFileError
from mlknobs.io.modelfile import load_checkpoint, load_model, save_checkpoint, save_model


@pytest.mark.parametrize("state, message", [
    ({}, "loop"),
    ({"loop": {"epochs_done": 1}, "rng": {"bit_generator": "nonsense"}}, "state"),
    ({"loop": {"epochs_done": "1"}, "rng": None}, "number"),
    ({"loop": {"epochs_done": 7}, "rng": None}, "epochs_done must be a whole number from 0 to 3, not 7"),
])
def test_damaged_checkpoint_state_is_refused(tmp_path, state, message):
    model = a_model()
    if state.get("rng", 0) is None:
        state["rng"] = np.random.default_rng(0).bit_generator.state
    save_checkpoint(tmp_path / "c.npz", model, model.params.zeros_like(), state)
    with pytest.raises(ModelFileError, match=message):
        load_checkpoint(tmp_path / "c.npz")


def test_deeply_nested_metadata_is_one_clear_error(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    text = meta_text(path)
    for brackets in (100_000, 40):
        set_meta_text(path, text[:-1] + ', "deep": ' + "[" * brackets + "]" * brackets + "}")
        with pytest.raises(ModelFileError, match="metadata is nested deeper than 32 levels"):
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
    with pytest.raises(ModelFileError, match="metadata is not valid Unicode at \\['created'\\]"):
        load_model(path)


@pytest.mark.parametrize("cut, words", [
    (lambda text: text[:-1], "metadata is not valid JSON (Expecting"),
    (lambda text: text[:-1] + ', "\\udc80": 1}', "metadata is not valid Unicode at  (a key)"),
    (lambda text: text[:-1] + ', "x": ["\ud800"]}', "metadata is not valid Unicode"),    # refused as UTF-32
    (lambda text: text + " []", "metadata is not valid JSON (Extra data"),
])
def test_metadata_that_is_not_strict_json_is_one_line_naming_the_file(tmp_path, cut, words):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    set_meta_text(path, cut(meta_text(path)))
    with pytest.raises(ModelFileError) as refused:
        load_model(path)
    assert str(refused.value).startswith(f"{path}: ") and words in str(refused.value)
    assert "\n" not in str(refused.value)


def test_control_characters_in_class_names_load(tmp_path):
    path = tmp_path / "m.npz"
    save_model(path, a_model())
    names = ["zero\x1b[31m", "one\nline"] + [str(i) for i in range(2, 10)]
    edit_meta(path, lambda meta: meta.update(class_names=names))
    assert load_model(path).class_names == names            # the CLI escapes them when printing


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
    (lambda m: m.update(test_accuracy=1.5), "test_accuracy must be a number from 0 to 1, not 1.5"),
    (lambda m: m.update(test_loss=-1), "test_loss must be a number >= 0, not -1"),
    (lambda m: m.update(test_loss="low"), "test_loss must be a number"),
    (lambda m: m.update(seconds=-3.0), "seconds"),
    (lambda m: m.update(stopped_early="yes"), "stopped_early"),
    (lambda m: m.update(best_epoch=99), "best_epoch must be a whole number from 0 to 3, not 99"),
    (lambda m: m["history"][0].update(train_accuracy=2), "train_accuracy must be a number from 0 to 1, not 2"),
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
    ({"epochs_done": 1, "step": -1}, "step must be a whole number from 0 to 7,813, not -1"),
    ({"epochs_done": 1, "step": 10**12}, "step must be a whole number from 0 to 7,813, not 1000000000000"),
    ({"epochs_done": 1, "step": 4.5}, "step must be a whole number"),
    ({"epochs_done": True}, "epochs_done must be a whole number"),
    ({"epochs_done": 1, "seconds": -1.0}, "seconds must be a number >= 0, not -1.0"),
    ({"epochs_done": 1, "best_epoch": 2}, "best_epoch must be a whole number from 0 to 1, not 2"),
    ({"epochs_done": 1, "best_val_accuracy": 1.5}, "best_val_accuracy must be a number from 0 to 1, not 1.5"),
    ({"epochs_done": 1, "best_val_loss": -0.1}, "best_val_loss"),
    ({"epochs_done": 1, "epochs_without_improvement": 5},
     "epochs_without_improvement must be a whole number from 0 to 1, not 5"),
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


@pytest.mark.parametrize("change, message", [
    (lambda r: r["state"].update(state=2**200), "rng state must be a whole number from 0 to 340,282,.*, not 1606938"),
    (lambda r: r["state"].update(inc=-1), "rng inc must be a whole number from 0 to .*, not -1"),
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

