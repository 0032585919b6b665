"""training.run: what `mlknobs train` does for any caller; here, the lineage of `--init-from`."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from mlknobs.config import TrainConfig
from mlknobs.errors import SettingsError
from mlknobs.io import modelfile
from mlknobs.io.modelfile import load_model
from mlknobs.training.run import DataSource, run


@pytest.fixture
def parent(synthetic_model_path, tmp_path):
    """A copy of the small synthetic model (H=32) this test may swap away."""
    return shutil.copy(synthetic_model_path, tmp_path / "parent.npz")


def swap_after_opening(monkeypatch, path, target):
    """Once `path` has been opened and checked, point its name at `target` (a race's other side)."""
    opened = modelfile.open_regular

    def open_then_swap(*args, **kwargs):
        f = opened(*args, **kwargs)
        os.replace(path, path.with_suffix(".moved"))
        os.symlink(target, path)
        return f

    monkeypatch.setattr(modelfile, "open_regular", open_then_swap)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "other"])
def test_the_lineage_hashes_the_bytes_loaded_even_if_the_path_is_swapped(synthetic_data_dir, parent, tmp_path,
                                                                         monkeypatch, no_hang, target):
    digest = hashlib.sha256(parent.read_bytes()).hexdigest()
    if target == "other":
        target = tmp_path / "other.npz"
        target.write_bytes(b"another file entirely")
    swap_after_opening(monkeypatch, parent, target)
    config = TrainConfig(epochs=1, hidden_size=32)
    model = run(config, tmp_path / "child.npz", data=DataSource(synthetic_data_dir), init_from=parent)
    assert model.parent["sha256"] == digest
    assert load_model(tmp_path / "child.npz").parent["sha256"] == digest


def test_a_hidden_size_that_does_not_match_is_refused_before_the_data_is_loaded(parent, tmp_path):
    class NoData(DataSource):
        def load(self, dataset):
            raise AssertionError("the data was loaded before the settings were checked")

    with pytest.raises(SettingsError, match="hidden_size 64 does not match .*parent.npz, which has 32") as refused:
        run(TrainConfig(epochs=1, hidden_size=64), tmp_path / "child.npz", data=NoData(), init_from=parent)
    assert refused.value.settings == ["hidden_size"]


def test_fit_refuses_an_initial_model_of_another_hidden_size_too(synthetic_splits, parent):
    from mlknobs.training.loop import fit

    train, test = synthetic_splits
    with pytest.raises(SettingsError, match="does not match the initial model, which has 32 hidden units"):
        fit(TrainConfig(epochs=1, hidden_size=16), train, test, [str(d) for d in range(10)],
            initial=load_model(parent))
