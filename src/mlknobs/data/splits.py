"""Load a dataset's splits as uint8 arrays, downloading on first use and caching the inflated arrays.

Inflating the 9.9 MB MNIST training images takes a few hundred milliseconds, so the first load
writes each array as a `.npy` under DATA_DIR/<dataset>/cache/ with a small JSON record of the
`.gz` it came from (size, mtime, inode, SHA-256). Later loads use the `.npy` only while the `.gz`
still has that size, mtime and inode (a download replaces the file, so it gets a new inode even
within one tick of the clock); otherwise the `.gz` is verified and parsed again and the cache
rewritten. A damaged or unwritable cache is never an error: the arrays come from the `.gz` then.

Runs sharing a data dir take turns per file: fetching, parsing and caching happen under the file's
download lock (download.file_lock), so a second run waits and then reads the first one's cache,
and the lock holder may delete cache temp files that a killed run left behind. The cache files
themselves are written atomically (temp file, then rename), so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlknobs.data import idx
from mlknobs.data.datasets import SPLIT_FILES, DatasetSpec, get_dataset
from mlknobs.data.download import DownloadSettings, ensure_file, file_lock, mirrors_for
from mlknobs.errors import DataFormatError, SettingsError
from mlknobs.files import atomic_write, remove_stale_temps

CACHE_VERSION = 2   # 2: the record also holds the inode of the .gz


def default_data_dir() -> Path:
    return Path(os.environ.get("MLKNOBS_DATA_DIR") or "data")


@dataclass(frozen=True)
class Split:
    images: np.ndarray   # uint8 (N, 784), one image per row
    labels: np.ndarray   # uint8 (N,)

    def __len__(self) -> int:
        return len(self.labels)


def load_split(dataset: str | DatasetSpec, split: str, data_dir: Path | None = None,
               mirrors=(), progress: bool | None = None,
               settings: DownloadSettings | None = None) -> Split:
    """One split ("train" or "test") of a dataset, downloaded first if it is not here yet.

    `settings` defaults to DownloadSettings.from_env().
    """
    spec = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLIT_FILES)})")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    image_file, label_file = SPLIT_FILES[split]
    mirror_list = None

    def array(filename: str, reader, ndim: int) -> np.ndarray:
        nonlocal mirror_list
        gz = data_dir / spec.name / filename
        cached = _read_cache(gz, spec.sha256[filename], ndim)
        if cached is not None:
            return cached
        if mirror_list is None:
            mirror_list = mirrors_for(spec, mirrors)
        # A read-only data dir cannot be locked, and needs no lock: nothing can be written there.
        with file_lock(gz.parent, filename, required=False) as locked:
            cached = _read_cache(gz, spec.sha256[filename], ndim) if locked else None
            if cached is not None:
                return cached   # another run wrote it while we waited for the lock
            gz = ensure_file(spec, filename, data_dir, mirror_list, progress=progress, settings=settings)
            result = reader(gz)
            _write_cache(gz, spec.sha256[filename], result, locked=locked)
            return result

    images = array(image_file, idx.read_images, ndim=2)
    labels = array(label_file, idx.read_labels, ndim=1)
    pixels = spec.image_shape[0] * spec.image_shape[1]
    if images.shape[1] != pixels:
        rows, cols = spec.image_shape
        raise DataFormatError(f"{spec.name} {split}: {image_file} holds images of {images.shape[1]} pixels, "
                              f"expected {rows} x {cols} = {pixels}")
    if len(images) != len(labels):
        raise DataFormatError(f"{spec.name} {split}: {len(images)} images in {image_file} but "
                              f"{len(labels)} labels in {label_file}")
    if labels.size and labels.max() >= len(spec.class_names):
        raise DataFormatError(f"{spec.name} {split}: label {labels.max()} out of range "
                              f"0..{len(spec.class_names) - 1} in {label_file}")
    return Split(images, labels)


def first(train: Split, train_size: int) -> Split:
    """The first `train_size` training samples (`train --train-size`); 0 means all of them."""
    if not train_size:
        return train
    if train_size > len(train):
        raise SettingsError([("train_size", f"{{train_size}} {train_size:,} is above the {len(train):,} "
                                            f"training samples")])
    return Split(train.images[:train_size], train.labels[:train_size])


def split_validation(train: Split, val_size: int) -> tuple[Split, Split]:
    """Hold out the last `val_size` training samples for validation (deterministic, like Nielsen's 50k/10k)."""
    if not 0 <= val_size < len(train):
        raise SettingsError([("val_size", f"{{val_size}} {val_size:,} leaves nothing to train on: it must be "
                                          f"below the {len(train):,} training samples")])
    cut = len(train) - val_size
    return (Split(train.images[:cut], train.labels[:cut]),
            Split(train.images[cut:], train.labels[cut:]))


# --- cache of inflated arrays -------------------------------------------------------------------

def _cache_paths(gz: Path) -> tuple[Path, Path]:
    stem = gz.name.removesuffix(".gz")
    cache_dir = gz.parent / "cache"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def _stamp(gz: Path, sha256: str) -> dict:
    st = gz.stat()
    return {"cache_version": CACHE_VERSION, "source": gz.name, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "sha256": sha256}


def _read_cache(gz: Path, sha256: str, ndim: int) -> np.ndarray | None:
    npy, record = _cache_paths(gz)
    try:
        if json.loads(record.read_text()) != _stamp(gz, sha256):
            return None
        array = np.load(npy, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing, stale or damaged cache (an empty .npy raises EOFError): rebuild it
    if array.dtype != np.uint8 or array.ndim != ndim or len(array) == 0:
        return None
    return array


def _write_cache(gz: Path, sha256: str, array: np.ndarray, locked: bool = False) -> None:
    """Write the cache entry of `gz`; `locked`: we hold its file_lock, so no one else writes it."""
    npy, record = _cache_paths(gz)
    try:
        npy.parent.mkdir(exist_ok=True)
        if locked:
            for path in (npy, record):
                remove_stale_temps(path)
        atomic_write(npy, lambda f: np.save(f, array, allow_pickle=False))
        # The record goes last: a cache without its record is never trusted.
        atomic_write(record, lambda f: f.write(json.dumps(_stamp(gz, sha256)).encode()))
    except OSError:
        pass  # a read-only data dir still works, just without the speed-up

