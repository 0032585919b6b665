"""Files in and out: read only regular files of bounded size, write atomically, one writer at a time.

    reading.py   open_regular, read_bounded: no input can block mlknobs or fill its memory
    writing.py   check_writable, atomic_write, remove_stale_temps, same_file: outputs whole or
                 untouched, never over an input
    lock.py      OutputLock: one writer per output (and the flock algorithm the downloads share)
    names.py     a file in words: its type, its size, where a symlink leads, on one line
    jsonl.py     strict_json, read_strict_json: JSON written as one strict line, read strictly with
                 a size and a nesting cap (NotJson otherwise)

Everything a caller needs is importable from here: `from mlknobs.files import atomic_write`.
"""

from mlknobs.files.jsonl import NotJson, read_strict_json, strict_json
from mlknobs.files.lock import OutputLock, lock_path_for
from mlknobs.files.names import describe_file_type, human_size
from mlknobs.files.reading import open_regular, read_bounded
from mlknobs.files.writing import (
    atomic_write,
    check_writable,
    fsync_dir,
    remove_stale_temps,
    same_file,
    temp_pattern,
)

__all__ = ["NotJson", "OutputLock", "atomic_write", "check_writable", "describe_file_type", "fsync_dir",
           "human_size", "lock_path_for", "open_regular", "read_bounded", "read_strict_json", "remove_stale_temps",
           "same_file", "strict_json", "temp_pattern"]
