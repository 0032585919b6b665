"""mlknobs.files: reading only regular files of bounded size, safe outputs, stale temps, one writer at a time."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlknobs.errors import ImageError, ModelFileError, OutputBusy, OutputError
from mlknobs.files import (
    OutputLock,
    atomic_write,
    check_writable,
    lock,
    lock_path_for,
    open_regular,
    read_bounded,
    remove_stale_temps,
    same_file,
)


def unix_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


@pytest.fixture
def short_tmp():
    """A folder with a short path (AF_UNIX socket paths are limited to ~100 characters)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mlk"))
    yield folder
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()


# --- open_regular: a path is read only if it is a regular file of bounded size -------------------

def test_open_regular_reads_a_regular_file_and_a_symlink_to_one(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"abc")
    (tmp_path / "link.bin").symlink_to(target)
    for path in (target, tmp_path / "link.bin"):
        with open_regular(path, 3, error=ModelFileError) as f:
            assert f.read() == b"abc"
            assert os.get_blocking(f.fileno())          # opened non-blocking, then blocking again


@pytest.mark.parametrize("make, word", [
    (lambda p: os.mkfifo(p), r"is a FIFO \(named pipe\)"),
    (lambda p: p.symlink_to("/dev/zero"), "is a character device"),
    (lambda p: p.symlink_to("/dev/null"), "is a character device"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_special_files_are_refused_by_kind_without_blocking(tmp_path, no_hang, make, word):
    path = tmp_path / "model.npz"
    make(path)
    for error in (ModelFileError, ImageError):
        with pytest.raises(error, match=word) as caught:
            open_regular(path, 1 << 30, error=error)
        message = str(caught.value)
        assert message.startswith(str(path)) and "\n" not in message
        if path.is_symlink():
            assert "leads to /dev/" in message


def test_a_socket_is_refused_by_kind(short_tmp):
    path = short_tmp / "s.npz"
    with unix_socket(path):
        with pytest.raises(ModelFileError, match="is a socket"):
            open_regular(path, 100, error=ModelFileError)


def test_a_fifo_swapped_in_after_the_check_neither_blocks_nor_passes(tmp_path, monkeypatch, no_hang):
    """The race: stat saw a regular file, the path is a FIFO by the time it is opened."""
    regular = tmp_path / "regular"
    regular.write_bytes(b"x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: real_stat(regular if Path(p) == fifo else p, *a, **k))
    with pytest.raises(ModelFileError, match="FIFO"):
        open_regular(fifo, 100, error=ModelFileError)     # open(O_NONBLOCK) returns, fstat refuses


def test_missing_and_oversized_files_are_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_regular(tmp_path / "absent.png", 10, error=ImageError)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(2**40)                                  # sparse: a terabyte that takes no disk
    with pytest.raises(ModelFileError, match=r"1 TiB is too large for a model file \(limit 1 GiB\)"):
        open_regular(big, 2**30, error=ModelFileError, kind="model file")


def test_symlink_loops_and_impossible_paths_are_the_callers_error(tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    with pytest.raises(ModelFileError, match="cannot open"):
        open_regular(loop, 10, error=ModelFileError)
    with pytest.raises(ImageError, match="cannot open"):
        open_regular(tmp_path / "nul\0.png", 10, error=ImageError)
    with pytest.raises(OutputError, match="cannot write"):
        check_writable(tmp_path / "nul\0.npz")


# --- read_bounded: at most limit + 1 bytes from any stream ------------------------------------------

class Endless(io.RawIOBase):
    """A stream that never ends, counting what it hands out."""

    def __init__(self):
        self.given = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"\0" * len(buffer)
        self.given += len(buffer)
        return len(buffer)


def test_read_bounded_returns_everything_up_to_the_limit():
    assert read_bounded(io.BytesIO(b"12345"), 5, "<stdin>", error=ImageError) == b"12345"
    assert read_bounded(io.BytesIO(b""), 5, "<stdin>", error=ImageError) == b""


def test_read_bounded_stops_an_endless_stream_after_limit_plus_one_bytes():
    stream = Endless()
    with pytest.raises(ImageError, match=r"<stdin>: more than 1 MiB, too large for a picture"):
        read_bounded(stream, 2**20, "<stdin>", error=ImageError, kind="picture")
    assert stream.given <= 2**20 + 1


def test_read_bounded_on_dev_zero_and_a_real_endless_pipe(no_hang):
    with open("/dev/zero", "rb") as zero, pytest.raises(ModelFileError, match="more than 64 KiB"):
        read_bounded(zero, 64 * 1024, "/dev/zero", error=ModelFileError)
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(ImageError, match="<stdin>: more than"):
            read_bounded(writer.stdout, 3 * 2**20, "<stdin>", error=ImageError)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()


def test_read_errors_are_the_callers_error_type():
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise OSError(5, "Input/output error")

    with pytest.raises(ImageError, match="<stdin>: cannot read \\(Input/output error\\)"):
        read_bounded(Broken(), 10, "<stdin>", error=ImageError)


# --- outputs: never replace something that is not a regular file ------------------------------------

@pytest.mark.parametrize("target, word", [("/dev/null", "character device"), ("/dev/zero", "character device")])
def test_check_writable_refuses_devices_and_symlinks_to_them(tmp_path, target, word):
    with pytest.raises(OutputError, match=word):
        check_writable(Path(target))
    link = tmp_path / "model.npz"
    link.symlink_to(target)
    with pytest.raises(OutputError, match=f"{word}.*leads to {target}"):
        check_writable(link)


def test_check_writable_refuses_fifos_sockets_and_directories(tmp_path, short_tmp):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        check_writable(fifo)
    with unix_socket(short_tmp / "s.npz"), pytest.raises(OutputError, match="socket"):
        check_writable(short_tmp / "s.npz")
    with pytest.raises(OutputError, match="directory"):
        check_writable(tmp_path)


def test_check_writable_accepts_new_files_regular_files_and_dangling_symlinks(tmp_path):
    check_writable(tmp_path / "new.npz")
    (tmp_path / "old.npz").write_bytes(b"x")
    check_writable(tmp_path / "old.npz")
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "nowhere")
    check_writable(tmp_path / "dangling.npz")
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "no" / "m.npz")


def test_atomic_write_never_replaces_a_special_file(tmp_path, no_hang):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "out.npz"
    link.symlink_to(fifo)
    for path in (fifo, link):
        with pytest.raises(OutputError, match="FIFO"):
            atomic_write(path, lambda f: f.write(b"data"))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "out.npz"]      # no temp left


# --- same_file: an output that is one of the inputs --------------------------------------------------

def test_same_file_sees_through_other_spellings_symlinks_and_hard_links(tmp_path, monkeypatch):
    model = tmp_path / "m.npz"
    model.write_bytes(b"model")
    (tmp_path / "link.npz").symlink_to(model)
    os.link(model, tmp_path / "hard.npz")
    monkeypatch.chdir(tmp_path)

    for other in (model, Path("m.npz"), tmp_path / "." / "m.npz", tmp_path / "link.npz", tmp_path / "hard.npz"):
        assert same_file(other, model) and same_file(model, other)


def test_same_file_is_false_for_copies_missing_paths_and_unusable_names(tmp_path):
    model = tmp_path / "m.npz"
    model.write_bytes(b"model")
    (tmp_path / "copy.npz").write_bytes(b"model")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")

    for other in (tmp_path / "copy.npz", tmp_path / "new.onnx", tmp_path / "dangling", Path("bad\0name")):
        assert not same_file(other, model)


# --- stale temps ------------------------------------------------------------------------------------

def test_remove_stale_temps_deletes_only_this_outputs_own_temps(tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"model")
    own = [tmp_path / ".m.npz.abcd_123.tmp", tmp_path / ".m.npz.zz99zz99.tmp"]
    others = [tmp_path / ".m.npz.abc.tmp", tmp_path / ".m.npz.abcdefghi.tmp", tmp_path / ".other.npz.abcd1234.tmp",
              tmp_path / ".m.npz.lock", tmp_path / "m.npz.abcd1234.tmp", tmp_path / ".m.npz.ckpt.npz"]
    for path in own + others:
        path.write_bytes(b"x")
    (tmp_path / "elsewhere").write_bytes(b"keep")
    (tmp_path / ".m.npz.link1234.tmp").symlink_to(tmp_path / "elsewhere")   # a symlink is not ours
    removed = remove_stale_temps(out)
    assert sorted(removed) == sorted(own)
    assert not any(p.exists() for p in own) and all(p.exists() for p in others)
    assert (tmp_path / "elsewhere").read_bytes() == b"keep" and out.read_bytes() == b"model"


def test_a_killed_save_leaves_a_temp_that_remove_stale_temps_deletes(tmp_path, no_hang):
    out = tmp_path / "m.npz"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from mlknobs.files import atomic_write
        def write(f):
            f.write(b"half a model")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        atomic_write({str(out)!r}, write)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()                        # SIGKILL: no cleanup runs
        writer.wait()
        writer.stdout.close()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".m.npz.")]
    assert len(left) == 1 and not out.exists()
    with OutputLock(out):
        assert remove_stale_temps(out) == left
    assert list(tmp_path.iterdir()) == []


# --- OutputLock -------------------------------------------------------------------------------------

def holder_process(out: Path) -> subprocess.Popen:
    """A second process that takes the output's lock, says so, and sleeps."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from mlknobs.files import OutputLock
        with OutputLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """), "--out", str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "locked\n"
    return child


def test_the_lock_records_its_holder_and_goes_on_release(tmp_path):
    out = tmp_path / "m.npz"
    with OutputLock(out) as lock:
        assert lock.held and lock.lock_path == lock_path_for(out) == tmp_path / ".m.npz.lock"
        holder = json.loads(lock.lock_path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["command"] and holder["since"]
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()}"):      # a second lock, same process
            OutputLock(out).acquire()
    assert not lock.held and list(tmp_path.iterdir()) == []
    lock.release()                                                       # idempotent


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path, no_hang):
    out = tmp_path / "m.npz"
    child = holder_process(out)
    try:
        with pytest.raises(OutputBusy) as caught:
            OutputLock(out).acquire()
        busy = caught.value
        assert isinstance(busy, OutputError) and busy.pid == child.pid and busy.path == out
        message = str(busy)
        assert f"pid {child.pid}" in message and "--out" in message and "since" in message
        assert str(out) in message and "\n" not in message
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_killed_holder_never_leaves_the_output_locked(tmp_path, no_hang):
    out = tmp_path / "m.npz"
    child = holder_process(out)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert lock_path_for(out).exists()                       # the stale lock file is still there ...
    with OutputLock(out) as lock:                            # ... and simply taken over
        assert json.loads(lock.lock_path.read_text())["pid"] == os.getpid()
    assert not lock_path_for(out).exists()


def test_locking_a_lock_file_that_its_holder_just_deleted_starts_over(tmp_path, monkeypatch):
    """B opened the lock file, A released (deleting it), B's flock succeeds on a deleted file:
    B must notice and lock the file at the path instead, so a third writer C is refused."""
    out = tmp_path / "m.npz"
    a = OutputLock(out)
    a.acquire()
    stale_fd = os.open(a.lock_path, os.O_RDWR)               # B's open, before A lets go
    a.release()
    b = OutputLock(out)
    real_open, calls = lock._open, []

    def open_stale_first(lock_path):
        calls.append(1)
        return stale_fd if len(calls) == 1 else real_open(lock_path)

    monkeypatch.setattr(lock, "_open", open_stale_first)
    b.acquire()
    monkeypatch.undo()
    assert len(calls) == 2 and b.lock_path.exists()
    with pytest.raises(OutputBusy):
        OutputLock(out).acquire()                             # C
    b.release()


def test_a_lock_file_that_is_a_symlink_or_fifo_is_refused(tmp_path, no_hang):
    out = tmp_path / "m.npz"
    (tmp_path / "victim").write_text("keep")
    lock_path_for(out).symlink_to(tmp_path / "victim")
    with pytest.raises(OutputError, match="symlink"):
        OutputLock(out).acquire()
    assert (tmp_path / "victim").read_text() == "keep"
    lock_path_for(out).unlink()
    os.mkfifo(lock_path_for(out))
    with pytest.raises(OutputError, match="FIFO"):
        OutputLock(out).acquire()


def test_a_lock_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        OutputLock(tmp_path / "nope" / "m.npz").acquire()


def test_a_busy_lock_with_damaged_holder_details_still_says_busy(tmp_path):
    out = tmp_path / "m.npz"
    with OutputLock(out) as lock:
        lock.lock_path.write_bytes(b"\x00not json\n")
        with pytest.raises(OutputBusy, match="another process") as caught:
            OutputLock(out).acquire()
        assert caught.value.pid is None
        lock.lock_path.write_text(json.dumps({"pid": 7, "command": "evil\nname\udc80", "since": "then"}))
        with pytest.raises(OutputBusy) as caught:
            OutputLock(out).acquire()
        message = str(caught.value)
        assert "pid 7" in message and "\n" not in message and "\\n" in message
        message.encode("utf-8")                               # printable: no lone surrogate
