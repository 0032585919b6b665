"""ensure_dataset and ensure_file: a verified copy of each file, from the first mirror that delivers one.

The common case (the verified file is there) needs no lock and no write. Otherwise, under the
file's lock: a verified copy that another process fetched meanwhile is taken as it is; else each
mirror is tried in turn (local folder or HTTP) until the .part file holds a verified copy, which
is then renamed to its final name. When every mirror fails, DownloadFailed lists why, one line
per mirror tried.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlknobs.data.datasets import DatasetSpec
from mlknobs.data.download.local import copy_local
from mlknobs.data.download.lock import file_lock
from mlknobs.data.download.mirrors import Mirror, mirrors_for
from mlknobs.data.download.partfile import (
    Expected,
    MirrorFailed,
    not_writable,
    remove_quietly,
    sha256_of,
    size_or_zero,
    verify,
)
from mlknobs.data.download.remote import fetch_http_verified, new_session
from mlknobs.data.download.settings import DownloadSettings
from mlknobs.errors import DownloadError, DownloadFailed
from mlknobs.files import fsync_dir, remove_stale_temps


def ensure_dataset(spec: DatasetSpec, data_dir: Path, user_mirrors=(), force: bool = False,
                   progress: bool | None = None,
                   settings: DownloadSettings | None = None) -> dict[str, Path]:
    """Make sure all four files of a dataset are present and verified; return their paths."""
    settings = settings if settings is not None else DownloadSettings.from_env()
    mirrors = mirrors_for(spec, user_mirrors)
    return {name: ensure_file(spec, name, data_dir, mirrors, force, progress, settings)
            for name in spec.files}


def ensure_file(spec: DatasetSpec, filename: str, data_dir: Path, mirrors: list[Mirror],
                force: bool = False, progress: bool | None = None,
                settings: DownloadSettings | None = None) -> Path:
    """Return DATA_DIR/<dataset>/<filename>, verified; download it first if needed.

    `settings` defaults to DownloadSettings.from_env(). Raises DownloadError when no mirror
    delivers, DataDirNotWritable when the file cannot be written into the data dir.
    """
    settings = settings if settings is not None else DownloadSettings.from_env()
    expected = Expected(spec.sha256[filename], spec.sizes[filename])
    folder = Path(data_dir) / spec.name
    final = folder / filename
    if not force and _is_verified(final, expected):
        return final   # the common case needs no lock, so a read-only data dir with its files works
    with file_lock(folder, filename):
        part = folder / f".{filename}.part"
        try:
            return _ensure_locked(spec, filename, final, part, expected, mirrors, force, progress, settings)
        except BaseException:
            # A run that ends, by failure or Ctrl-C, cleans up after itself; only a killed run
            # leaves a .part behind, and the next run resumes it.
            remove_quietly(part)
            raise


def _ensure_locked(spec: DatasetSpec, filename: str, final: Path, part: Path, expected: Expected,
                   mirrors: list[Mirror], force: bool, progress: bool | None,
                   settings: DownloadSettings) -> Path:
    """ensure_file's work while holding the file's lock: no other process touches its files now."""
    folder = final.parent
    remove_stale_temps(final)   # atomic_write's leftovers (the splits cache), no live writer now
    reasons = []
    if not force and final.exists():
        if _is_verified(final, expected):
            remove_quietly(part)   # another process fetched it while we waited for the lock
            return final
        # A corrupt copy under the final name (edited by hand, disk error): fetch a fresh one,
        # and say so if no mirror can deliver one.
        reasons.append(f"{final}: present but fails its SHA-256 check")
    if force or size_or_zero(part) > expected.size:
        remove_quietly(part)   # a partial file bigger than the whole one is garbage
    if _fetch_from_mirrors(spec.name, filename, part, expected, mirrors, progress, settings, reasons):
        try:
            os.replace(part, final)
        except OSError as e:
            raise not_writable(folder, e) from e
        fsync_dir(folder)
        return final
    raise DownloadFailed(spec.name, filename, reasons)


def _fetch_from_mirrors(dataset: str, filename: str, part: Path, expected: Expected, mirrors: list[Mirror],
                        progress: bool | None, settings: DownloadSettings, reasons: list[str]) -> bool:
    """Try each mirror in turn until `part` holds a verified copy; note why each one failed."""
    session = None
    try:
        for mirror in mirrors:
            where = mirror.locate(dataset, filename)
            try:
                if mirror.is_local:
                    copy_local(Path(where), part, expected.size, progress)
                    verify(part, expected, resumed=False)
                else:
                    session = session or new_session()
                    fetch_http_verified(session, where, part, expected, settings, progress)
                return True
            except MirrorFailed as e:
                reasons.append(f"{where}: {e}")
        return False
    finally:
        if session is not None:
            session.close()


def _is_verified(path: Path, expected: Expected) -> bool:
    """Is there a regular file at `path` with the official size and checksum?"""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        raise DownloadError(f"cannot use data folder {path.parent}: {e.strerror or e}") from e
    # Checked before hashing: a FIFO would block the read, a huge file would take minutes.
    if not stat.S_ISREG(info.st_mode) or info.st_size != expected.size:
        return False
    try:
        return sha256_of(path) == expected.sha256
    except OSError as e:
        raise DownloadError(f"cannot read {path}: {e.strerror or e}") from e
