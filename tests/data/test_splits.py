"""load_split (download on first use, cached inflated arrays), split_validation, and the real datasets end to end."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_idx_dataset
from mlknobs.cli import cli
from mlknobs.data import idx
from mlknobs.data import splits as data
from mlknobs.data.datasets import FASHION_MNIST, MNIST, SPLIT_FILES, DatasetSpec
from mlknobs.data.download import ensure_dataset
from mlknobs.data.splits import Split, default_data_dir, load_split, split_validation
from mlknobs.errors import DataFormatError, DownloadError, SettingsError

TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]


@dataclass(frozen=True)
class Tiny:
    spec: DatasetSpec
    mirror: Path     # a local mirror root holding tiny/<file>
    data_dir: Path

    def gz(self, name: str) -> Path:
        return self.data_dir / "tiny" / name

    def cache(self, name: str, suffix: str) -> Path:
        return self.data_dir / "tiny" / "cache" / name.replace(".gz", suffix)

    def load(self, split: str = "train", spec: DatasetSpec | None = None) -> Split:
        return load_split(spec or self.spec, split, self.data_dir, mirrors=[str(self.mirror)], progress=False)


def spec_for(folder: Path, name: str = "tiny") -> DatasetSpec:
    """A dataset spec whose checksums are those of the files now in `folder`, with no built-in mirrors."""
    files = sorted(folder.glob("*.gz"))
    return DatasetSpec(name=name, sha256={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
                       sizes={p.name: p.stat().st_size for p in files},
                       class_names=tuple(str(d) for d in range(10)), mirrors=())


@pytest.fixture
def tiny(tmp_path) -> Tiny:
    make_idx_dataset(tmp_path / "mirror" / "tiny", n_train=60, n_test=20)
    return Tiny(spec_for(tmp_path / "mirror" / "tiny"), tmp_path / "mirror", tmp_path / "data")


@pytest.fixture
def calls(monkeypatch) -> Counter:
    """How often load_split parses a .gz (read_images/read_labels) or asks the downloader (ensure_file)."""
    counts = Counter()

    def counting(name, func):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return func(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(idx, "read_images", counting("read_images", idx.read_images))
    monkeypatch.setattr(idx, "read_labels", counting("read_labels", idx.read_labels))
    monkeypatch.setattr(data, "ensure_file", counting("ensure_file", data.ensure_file))
    return counts


def assert_same_split(a: Split, b: Split) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


# --- loading -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("split", "n"), [("train", 60), ("test", 20)])
def test_load_split_fetches_and_returns_flat_uint8_arrays(tiny, split, n):
    result = tiny.load(split)

    images_file, labels_file = SPLIT_FILES[split]
    assert result.images.dtype == np.uint8 and result.images.shape == (n, 784)
    assert result.labels.dtype == np.uint8 and result.labels.shape == (n,)
    assert len(result) == n
    np.testing.assert_array_equal(result.images, idx.read_images(tiny.mirror / "tiny" / images_file))
    np.testing.assert_array_equal(result.labels, np.arange(n) % 10)
    assert tiny.gz(images_file).read_bytes() == (tiny.mirror / "tiny" / images_file).read_bytes()


def test_second_load_comes_from_the_cache(tiny, calls):
    first = tiny.load()
    assert calls == {"read_images": 1, "read_labels": 1, "ensure_file": 2}
    calls.clear()

    second = tiny.load()

    assert calls == {}
    assert_same_split(first, second)
    assert second.images.dtype == np.uint8 and second.images.shape == (60, 784)


def test_touched_gz_invalidates_its_cache_entry(tiny, calls):
    first = tiny.load()
    gz = tiny.gz(TRAIN_IMAGES)
    st = gz.stat()
    os.utime(gz, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    calls.clear()

    again = tiny.load()

    assert calls == {"read_images": 1, "ensure_file": 1}   # only the touched file is parsed again
    assert_same_split(first, again)
    calls.clear()
    tiny.load()
    assert calls == {}   # and its cache entry was rewritten


def test_gz_replaced_by_other_content_is_verified_again_even_with_the_same_size_and_mtime(tiny, calls):
    first = tiny.load()
    gz = tiny.gz(TRAIN_LABELS)
    original, st = gz.read_bytes(), gz.stat()
    impostor = gz.with_name("impostor")
    impostor.write_bytes(bytes(b ^ 0x55 for b in original))   # same size, wrong content
    os.utime(impostor, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(impostor, gz)                                   # a new file, as a download makes it
    calls.clear()

    again = tiny.load()

    # The stale cache was not trusted: the replaced file failed its checksum and was fetched again.
    assert calls == {"ensure_file": 1, "read_labels": 1}
    assert gz.read_bytes() == original
    assert_same_split(first, again)


def test_new_dataset_contents_are_loaded_not_the_old_cache(tiny, tmp_path):
    tiny.load()
    other = tmp_path / "other" / "tiny"
    make_idx_dataset(other, n_train=40, n_test=20, seed=7)
    for path in other.iterdir():
        os.replace(path, tiny.gz(path.name))
    new_spec = spec_for(tiny.data_dir / "tiny")

    result = tiny.load(spec=new_spec)

    assert result.images.shape == (40, 784)
    np.testing.assert_array_equal(result.images, idx.read_images(tiny.gz(TRAIN_IMAGES)))


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x93NUMPY garbage" * 10)


def _truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _float_array(path: Path) -> None:
    np.save(path, np.zeros((60, 784), dtype=np.float32))


def _wrong_rank(path: Path) -> None:
    np.save(path, np.zeros(60 * 784, dtype=np.uint8))


def _pickled_object(path: Path) -> None:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _remove(path: Path) -> None:
    path.unlink()


CACHE_DAMAGE = ([(".npy", d) for d in (_garbage, _truncate, _empty, _float_array, _wrong_rank, _pickled_object, _remove)]
                + [(".json", d) for d in (_garbage, _truncate, _empty, _remove)])


@pytest.mark.parametrize(("which", "damage"), CACHE_DAMAGE,
                         ids=[f"{which}{damage.__name__}" for which, damage in CACHE_DAMAGE])
def test_damaged_cache_is_rebuilt(tiny, calls, which, damage):
    first = tiny.load()
    damage(tiny.cache(TRAIN_IMAGES, which))
    calls.clear()

    again = tiny.load()

    assert calls["read_images"] == 1
    assert_same_split(first, again)
    calls.clear()
    tiny.load()
    assert calls == {}   # rebuilt, so trusted again


def test_read_only_data_dir_still_loads(tiny, calls, monkeypatch):
    ensure_dataset(tiny.spec, tiny.data_dir, [str(tiny.mirror)], progress=False)   # files, but no cache yet
    folder = tiny.data_dir / "tiny"
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:
        # Root writes through permission bits; make every cache write fail as it would for a user.
        def refuse(path, write):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(data, "atomic_write", refuse)
    try:
        first = tiny.load()
        second = tiny.load()
    finally:
        folder.chmod(stat.S_IRWXU)

    np.testing.assert_array_equal(first.labels, np.arange(60) % 10)
    assert_same_split(first, second)
    assert calls["read_images"] == 2   # no cache could be written, so both loads parsed the .gz
    assert not list(folder.glob("cache/*.npy"))


def test_read_only_data_dir_with_a_warm_cache(tiny, calls):
    first = tiny.load()
    folder = tiny.data_dir / "tiny"
    for path in [folder / "cache", folder]:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    calls.clear()
    try:
        again = tiny.load()
    finally:
        for path in [folder, folder / "cache"]:
            path.chmod(stat.S_IRWXU)

    assert calls == {}
    assert_same_split(first, again)


# --- concurrent runs ---------------------------------------------------------------------------------

LOADER = """
import hashlib, json, sys
from pathlib import Path
from mlknobs.data.datasets import DatasetSpec
from mlknobs.data.splits import load_split

spec, data_dir, mirror = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spec = DatasetSpec(name=spec["name"], sha256=spec["sha256"], sizes=spec["sizes"],
                   class_names=tuple(spec["class_names"]), mirrors=())
print("ready", flush=True)
sys.stdin.readline()
split = load_split(spec, "train", data_dir, mirrors=[mirror], progress=False)
print(hashlib.sha256(split.images.tobytes() + split.labels.tobytes()).hexdigest())
"""


def test_concurrent_first_loads_share_one_download_and_one_cache(tiny):
    expected = tiny.load()   # in another data dir: what every run must get
    data_dir = tiny.data_dir.with_name("shared")
    spec = json.dumps({"name": tiny.spec.name, "sha256": tiny.spec.sha256, "sizes": tiny.spec.sizes,
                       "class_names": list(tiny.spec.class_names)})
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", LOADER, spec, str(data_dir), str(tiny.mirror)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    try:
        for run in runs:
            assert run.stdout.readline() == "ready\n", run.stderr.read()
        for run in runs:   # all at once
            run.stdin.write("go\n")
            run.stdin.flush()
        results = [run.communicate(timeout=120) for run in runs]
    finally:
        for run in runs:
            run.kill()

    digest = hashlib.sha256(expected.images.tobytes() + expected.labels.tobytes()).hexdigest()
    for run, (out, err) in zip(runs, results):
        assert run.returncode == 0, err
        assert out.strip() == digest
    folder = data_dir / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted([TRAIN_IMAGES, TRAIN_LABELS, "cache"])
    assert sorted(p.name for p in (folder / "cache").iterdir()) == sorted(
        name.replace(".gz", suffix) for name in (TRAIN_IMAGES, TRAIN_LABELS) for suffix in (".npy", ".json"))
    assert_same_split(load_split(tiny.spec, "train", data_dir, progress=False), expected)   # a valid cache


def test_cache_temp_files_of_a_killed_run_are_removed_when_the_cache_is_written(tiny, calls):
    cache = tiny.data_dir / "tiny" / "cache"
    cache.mkdir(parents=True)
    stale = [cache / f".{TRAIN_IMAGES.replace('.gz', suffix)}.k1ll3d_x.tmp" for suffix in (".npy", ".json")]
    for path in stale:
        path.write_bytes(b"half an array")

    tiny.load()

    assert not any(path.exists() for path in stale)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
    calls.clear()
    tiny.load()
    assert calls == {}


# --- inconsistent datasets -------------------------------------------------------------------------

def _rewrite(tiny: Tiny, name: str, array: np.ndarray) -> Tiny:
    """The same tiny dataset with one mirror file replaced and the spec's checksums updated."""
    idx.write_idx(tiny.mirror / "tiny" / name, array)
    return replace(tiny, spec=spec_for(tiny.mirror / "tiny"))


def test_image_and_label_counts_must_agree(tiny):
    tiny = _rewrite(tiny, TRAIN_LABELS, np.zeros(59, dtype=np.uint8))

    with pytest.raises(DataFormatError) as error:
        tiny.load()

    assert str(error.value) == (f"tiny train: 60 images in {TRAIN_IMAGES} but 59 labels in {TRAIN_LABELS}")


def test_labels_must_name_a_known_class(tiny):
    tiny = _rewrite(tiny, TRAIN_LABELS, np.full(60, 10, dtype=np.uint8))

    with pytest.raises(DataFormatError, match=f"label 10 out of range 0..9 in {TRAIN_LABELS}"):
        tiny.load()


def test_images_must_have_the_dataset_image_size(tiny):
    tiny = _rewrite(tiny, TRAIN_IMAGES, np.zeros((60, 20, 20), dtype=np.uint8))

    with pytest.raises(DataFormatError, match=f"{TRAIN_IMAGES} holds images of 400 pixels, expected 28 x 28 = 784"):
        tiny.load()


def test_unknown_split_and_dataset_are_clear_errors(tiny):
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        tiny.load("validation")
    with pytest.raises(ValueError, match="unknown dataset 'kmnist'"):
        load_split("kmnist", "train", tiny.data_dir)


def test_no_mirror_with_the_file_is_a_download_error(tiny, tmp_path):
    with pytest.raises(DownloadError, match="could not download tiny/train-images-idx3-ubyte.gz"):
        load_split(tiny.spec, "train", tiny.data_dir, mirrors=[str(tmp_path / "empty")], progress=False)


def test_default_data_dir(monkeypatch):
    assert default_data_dir() == Path("data")
    monkeypatch.setenv("MLKNOBS_DATA_DIR", "/srv/datasets")
    assert default_data_dir() == Path("/srv/datasets")


# --- split_validation ---------------------------------------------------------------------------------

def _numbered_split(n: int) -> Split:
    return Split(np.arange(n * 784, dtype=np.int64).astype(np.uint8).reshape(n, 784), (np.arange(n) % 10).astype(np.uint8))


def test_split_validation_holds_out_the_last_samples_every_time():
    train = _numbered_split(50)

    fit, val = split_validation(train, 12)
    fit_again, val_again = split_validation(train, 12)

    assert (len(fit), len(val)) == (38, 12)
    np.testing.assert_array_equal(val.images, train.images[38:])
    np.testing.assert_array_equal(val.labels, train.labels[38:])
    np.testing.assert_array_equal(fit.images, train.images[:38])
    assert_same_split(fit, fit_again)
    assert_same_split(val, val_again)


def test_split_validation_of_zero_keeps_everything_for_fitting():
    fit, val = split_validation(_numbered_split(10), 0)

    assert (len(fit), len(val)) == (10, 0)


@pytest.mark.parametrize("val_size", [-1, 10, 11])
def test_split_validation_refuses_sizes_that_leave_nothing_to_fit(val_size):
    with pytest.raises(SettingsError, match="leaves nothing to train on: it must be below the 10 training") as error:
        split_validation(_numbered_split(10), val_size)
    assert error.value.settings == ["val_size"]


# --- the real datasets, end to end ----------------------------------------------------------------

REAL = [
    (MNIST, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
     [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    (FASHION_MNIST, [6000] * 10, [1000] * 10),
]


@pytest.mark.real_data
@pytest.mark.parametrize(("spec", "train_counts", "test_counts"), REAL, ids=[r[0].name for r in REAL])
def test_real_dataset_downloads_through_the_cli_mirror_and_loads(shared_data, tmp_path, spec, train_counts, test_counts):
    data_dir = tmp_path / "data"

    result = CliRunner().invoke(cli, ["download", "--dataset", spec.name, "--data-dir", str(data_dir),
                                      "--mirror", str(shared_data)])

    assert result.exit_code == 0, result.output
    for name, sha256 in spec.sha256.items():
        assert hashlib.sha256((data_dir / spec.name / name).read_bytes()).hexdigest() == sha256
    train = load_split(spec.name, "train", data_dir, progress=False)
    test = load_split(spec.name, "test", data_dir, progress=False)
    assert train.images.shape == (60000, 784) and test.images.shape == (10000, 784)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.uint8
    assert np.bincount(train.labels, minlength=10).tolist() == train_counts
    assert np.bincount(test.labels, minlength=10).tolist() == test_counts
    # The cached copy (second load) is the same data.
    assert_same_split(load_split(spec.name, "test", data_dir, progress=False), test)
