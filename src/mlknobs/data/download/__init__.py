"""Fetch dataset files from mirrors, verify them by size and SHA-256, and write them atomically.

A mirror is either a built-in base URL (the official layout: BASE + file name) or one the user
gives: an http(s)/file URL or a local folder holding one sub-folder per dataset, laid out like the
data dir (BASE/mnist/train-images-idx3-ubyte.gz). User mirrors are tried first, in order.

Nothing reaches its final name before its checksum passes: bytes go to a hidden `.part` file
beside it, which survives a failed attempt so that the next attempt or mirror can resume it with an
HTTP Range request. When the download fails for good (or is interrupted) the `.part` is removed;
one left by a killed run is resumed by the next.

A mirror may be hostile or broken, so every transfer is bounded:
- in size: no file is written past its official size, and a Content-Length above it is refused;
  a local mirror's file must be a regular file (not a FIFO or /dev/zero) no larger than that;
- in time: a watchdog thread closes the socket of a transfer that stays below a minimum speed
  (like curl's --speed-limit/--speed-time) or runs past a per-file deadline, headers included,
  which requests' per-read timeout alone cannot do against a server that sends a byte at a time.

Concurrent runs (several shells, parallel jobs) share a data dir safely: each file is fetched
under an exclusive OS lock (flock on DATA_DIR/<dataset>/.<file>.lock), so a second process waits,
then finds the verified file. The kernel drops the lock when its holder dies, kill -9 included.

The modules, one idea each:

    fetch.py      ensure_dataset, ensure_file: the order of things (check, lock, mirrors, rename)
    mirrors.py    Mirror, parse_mirror, mirrors_for: which mirrors, in which order, where a file is
    settings.py   DownloadSettings: timeouts, retries, deadline, speed limit, from MLKNOBS_DOWNLOAD_*
    lock.py       file_lock: one downloader per file (the flock algorithm of mlknobs.files.lock)
    partfile.py   the .part file: writing, verifying; how an attempt on a mirror ends
    local.py      copies from a local folder mirror
    remote.py     HTTP(S) transfers: resume, retries with backoff, size bounds
    watchdog.py   the deadline and minimum speed of a transfer, enforced from another thread
    wording.py    why a connection failed, in a few words
"""

from mlknobs.data.download.fetch import ensure_dataset, ensure_file
from mlknobs.data.download.lock import file_lock
from mlknobs.data.download.mirrors import Mirror, mirrors_for, parse_mirror
from mlknobs.data.download.partfile import sha256_of
from mlknobs.data.download.settings import ENV_VARIABLES, SETTING_RANGES, DownloadSettings

__all__ = ["ENV_VARIABLES", "SETTING_RANGES", "DownloadSettings", "Mirror", "ensure_dataset", "ensure_file",
           "file_lock", "mirrors_for", "parse_mirror", "sha256_of"]
