"""`mlknobs download` and mlknobs.data.download against a loopback HTTP server and local mirrors.

A tiny generated dataset stands in for MNIST: its files are served by tests/httpserver.py (or sit
in a local folder) and its SHA-256 sums and sizes replace the official ones for the test. Nothing
here touches the internet: the stand-in spec has no built-in mirrors unless a test gives it
loopback ones. Tests of hostile mirrors (trickling, endless, huge) run with deadlines and speed
limits of a second or less, inside `time_limit`, so that a regression fails instead of hanging.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import make_idx_dataset
from mlknobs.cli import cli
from mlknobs.data import datasets
from mlknobs.data.datasets import DatasetSpec
from mlknobs.data.download import (
    DownloadSettings,
    Mirror,
    ensure_dataset,
    ensure_file,
    file_lock,
    mirrors_for,
    parse_mirror,
    partfile,
    remote,
)
from mlknobs.errors import DataDirNotWritable, DownloadError, DownloadSettingsError, MlknobsError

IMAGES = "train-images-idx3-ubyte.gz"
LABELS = "train-labels-idx1-ubyte.gz"
NO_WAIT = DownloadSettings(connect_timeout=2, read_timeout=2, retries=2, backoff=0)
# For hostile mirrors: abandon below 1000 B/s over half a second, or after 3 s in all.
IMPATIENT = replace(NO_WAIT, speed_limit=1000, speed_time=0.5, deadline=3)


@dataclass(frozen=True)
class Tiny:
    spec: DatasetSpec
    files: dict[str, bytes]   # official name -> bytes
    source: Path              # a local mirror root: source/mnist/<file>
    data_dir: Path            # where downloads should land (not created yet)

    @property
    def dest(self) -> Path:
        return self.data_dir / "mnist"


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Tiny:
    """A tiny dataset registered as "mnist" with its own checksums; retries do not sleep."""
    files = make_idx_dataset(tmp_path / "source" / "mnist", n_train=60, n_test=20)
    spec = DatasetSpec(name="mnist", sha256={name: sha256(data) for name, data in files.items()},
                       sizes={name: len(data) for name, data in files.items()},
                       class_names=tuple(str(d) for d in range(10)), mirrors=())
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_BACKOFF", "0")
    return Tiny(spec, files, tmp_path / "source", tmp_path / "data")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve_dataset(server, tiny: Tiny, prefix: str = "", **behaviours: tuple[str, ...]) -> str:
    """Serve every file under /<prefix>mnist/; behaviours maps a file name to its script. Returns the base URL."""
    for name, data in tiny.files.items():
        server.serve(f"/{prefix}mnist/{name}", data, *behaviours.get(name, ("normal",)))
    return server.url + prefix


def run_download(tiny: Tiny, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["download", "--data-dir", str(tiny.data_dir), *args], env=env)


def assert_clean_failure(result, exit_code: int = 1) -> None:
    """Exit 1 (2 for a usage mistake) through click's error path: a message, never a traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")


def assert_complete(tiny: Tiny) -> None:
    """Every file is present under its official name with the right bytes, and nothing else is."""
    for name, data in tiny.files.items():
        assert (tiny.dest / name).read_bytes() == data
    assert sorted(p.name for p in tiny.dest.iterdir()) == sorted(tiny.files)


def leftovers(tiny: Tiny) -> list[str]:
    """Temp or partial files in the dataset folder."""
    if not tiny.dest.exists():
        return []
    return sorted(p.name for p in tiny.dest.iterdir() if p.name.startswith(".") or p.suffix in (".part", ".tmp"))


class Hung(BaseException):
    """Raised by time_limit; a BaseException, so that no `except Exception` in the code under test hides it."""


@contextmanager
def time_limit(seconds: float):
    """Fail with Hung instead of hanging when the block takes longer than `seconds`."""
    def expire(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fetch_images(tiny: Tiny, *mirrors: str, settings: DownloadSettings = IMPATIENT) -> Path:
    return ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, list(mirrors)),
                       progress=False, settings=settings)


def failure_of(tiny: Tiny, *mirrors: str, settings: DownloadSettings = IMPATIENT) -> str:
    """The DownloadError message of fetching the images from `mirrors`, which must fail."""
    with pytest.raises(DownloadError) as error:
        fetch_images(tiny, *mirrors, settings=settings)
    return str(error.value)


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released), so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- success paths -----------------------------------------------------------------------------

def test_http_mirror_delivers_every_file_under_its_official_name(tiny, http_server):
    base = serve_dataset(http_server, tiny)

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert [line.split()[0] for line in result.output.splitlines()] == ["ok"] * 4
    assert sorted(r.path for r in http_server.requests) == sorted(f"/mnist/{n}" for n in tiny.files)
    assert all(r.range is None and r.status == 200 for r in http_server.requests)


def test_library_returns_the_verified_paths(tiny, http_server):
    base = serve_dataset(http_server, tiny)

    paths = ensure_dataset(tiny.spec, tiny.data_dir, [base], progress=False, settings=NO_WAIT)

    assert paths == {name: tiny.dest / name for name in tiny.files}
    assert_complete(tiny)


def test_progress_bar_goes_to_stderr_when_asked_for(tiny, http_server, capsys):
    base = serve_dataset(http_server, tiny)

    ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, [base]), progress=True, settings=NO_WAIT)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"\r{IMAGES}:" in captured.err and "B/s" in captured.err   # a byte-counting bar, cleared at the end


def test_local_folder_mirror(tiny):
    result = run_download(tiny, "--mirror", str(tiny.source), "--quiet")

    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert_complete(tiny)


def test_data_dir_defaults_to_data_in_the_working_folder_and_follows_the_environment(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    default = CliRunner().invoke(cli, ["download", "--mirror", str(tiny.source)])
    elsewhere = CliRunner().invoke(cli, ["download", "--mirror", str(tiny.source)],
                                   env={"MLKNOBS_DATA_DIR": str(tmp_path / "elsewhere")})

    assert default.exit_code == 0, default.output
    assert tiny.data_dir == tmp_path / "data"
    assert_complete(tiny)
    assert elsewhere.exit_code == 0, elsewhere.output
    assert_complete(replace(tiny, data_dir=tmp_path / "elsewhere"))


def test_file_url_mirror(tiny):
    result = run_download(tiny, "--mirror", tiny.source.as_uri())

    assert result.exit_code == 0, result.output
    assert_complete(tiny)


def test_env_mirror_list_is_split_on_whitespace_and_tried_in_order(tiny, http_server):
    missing_on_server = http_server.url + "nothing-here/"
    env = {"MLKNOBS_MIRROR": f"  {missing_on_server}\n\t{tiny.source}  "}

    result = run_download(tiny, env=env)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    # The first mirror was asked for every file (and said 404) before the second delivered it.
    assert sorted(r.path for r in http_server.requests) == sorted(f"/nothing-here/mnist/{n}" for n in tiny.files)
    assert {r.status for r in http_server.requests} == {404}


def test_404_on_first_mirror_then_second_mirror_delivers(tiny, http_server):
    good = serve_dataset(http_server, tiny, prefix="good/")

    result = run_download(tiny, "--mirror", http_server.url + "bad/", "--mirror", good)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    for name in tiny.files:
        assert [(r.path, r.status) for r in http_server.requests if r.path.endswith(name)] == [
            (f"/bad/mnist/{name}", 404), (f"/good/mnist/{name}", 200)]


def with_builtin_mirror(tiny: Tiny, http_server, monkeypatch) -> str:
    """Give the stand-in dataset one built-in mirror, on the loopback server (flat layout); return its URL."""
    for name, data in tiny.files.items():
        http_server.serve(f"/builtin/{name}", data)
    builtin = http_server.url + "builtin/"
    monkeypatch.setitem(datasets.DATASETS, "mnist", replace(tiny.spec, mirrors=(builtin,)))
    return builtin


def test_without_a_given_mirror_the_builtin_ones_are_used_in_the_flat_layout(tiny, http_server, monkeypatch):
    with_builtin_mirror(tiny, http_server, monkeypatch)

    result = run_download(tiny, env={"MLKNOBS_MIRROR": ""})

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert sorted(r.path for r in http_server.requests) == sorted(f"/builtin/{name}" for name in tiny.files)


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_given_folder_mirror_replaces_the_builtin_ones(tiny, http_server, monkeypatch, tmp_path, how):
    with_builtin_mirror(tiny, http_server, monkeypatch)
    empty = tmp_path / "typo"
    (empty / "mnist").mkdir(parents=True)

    if how == "option":
        result = run_download(tiny, "--mirror", str(empty))
    else:
        result = run_download(tiny, env={"MLKNOBS_MIRROR": str(empty)})

    assert_clean_failure(result)
    assert http_server.requests == []                        # nothing but the folder was tried
    tried = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert tried == [f"  - {empty / 'mnist' / IMAGES}: no such file"]


def test_a_given_http_mirror_that_lacks_a_file_does_not_fall_back_either(tiny, http_server, monkeypatch):
    with_builtin_mirror(tiny, http_server, monkeypatch)

    message = failure_of(tiny, http_server.url + "user/")

    assert [r.path for r in http_server.requests] == [f"/user/mnist/{IMAGES}"]
    assert message.splitlines()[1:] == [f"  - {http_server.url}user/mnist/{IMAGES}: HTTP 404 Not Found"]


def test_a_folder_mirror_lacking_the_files_never_reaches_the_real_builtin_mirrors(tmp_path, monkeypatch):
    """The real MNIST spec (internet mirrors) and an empty folder: no name is looked up, no socket opened."""
    contacted = []

    def refuse(*args, **kwargs):
        contacted.append(args[0])
        raise OSError("this test must not go online")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    (tmp_path / "empty").mkdir()

    with pytest.raises(DownloadError) as error:
        ensure_dataset(datasets.MNIST, tmp_path / "data", [str(tmp_path / "empty")], progress=False)

    assert contacted == []
    assert str(error.value).splitlines()[1:] == [f"  - {tmp_path / 'empty' / 'mnist' / IMAGES}: no such file"]


@pytest.mark.parametrize("how", ["option", "variable"])
def test_the_word_builtin_brings_the_builtin_mirrors_back_at_its_place(tiny, http_server, monkeypatch, tmp_path,
                                                                       how):
    with_builtin_mirror(tiny, http_server, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()

    if how == "option":
        result = run_download(tiny, "--mirror", str(empty), "--mirror", "builtin")
    else:
        result = run_download(tiny, env={"MLKNOBS_MIRROR": f"{empty} builtin"})

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert sorted(r.path for r in http_server.requests) == sorted(f"/builtin/{name}" for name in tiny.files)


def test_builtin_comes_where_the_word_stands_and_each_mirror_once(tiny):
    spec = replace(tiny.spec, mirrors=("https://a.example/", "https://b.example/"))
    flat = [Mirror("https://a.example/", per_dataset=False), Mirror("https://b.example/", per_dataset=False)]

    assert mirrors_for(spec) == flat
    assert mirrors_for(spec, ["/srv"]) == [parse_mirror("/srv")]
    assert mirrors_for(spec, ["builtin", "/srv"]) == [*flat, parse_mirror("/srv")]
    assert mirrors_for(spec, ["/srv", "builtin", "/srv", " builtin "]) == [parse_mirror("/srv"), *flat]
    assert mirrors_for(replace(spec, mirrors=()), ["builtin"]) == []


def test_a_folder_called_builtin_is_written_with_a_path():
    folder = parse_mirror("./builtin")

    assert folder.is_local and not folder.stands_for_builtin
    assert not parse_mirror("builtin").is_local and parse_mirror("builtin").stands_for_builtin


def test_gzip_content_encoding_does_not_inflate_the_file(tiny, http_server):
    # S3 serves .gz objects uploaded with Content-Encoding: gzip; the bytes must stay as stored.
    base = serve_dataset(http_server, tiny, **{name: ("gzip-encoded",) for name in tiny.files})

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)


# --- retries and resume -------------------------------------------------------------------------

def test_connection_cut_halfway_is_resumed_with_a_range_request(tiny, http_server):
    base = serve_dataset(http_server, tiny, **{IMAGES: ("cut", "normal")})
    size = len(tiny.files[IMAGES])
    half = size // 2

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    first, second = http_server.requests_for(f"/mnist/{IMAGES}")
    assert (first.range, first.status, first.body_bytes) == (None, 200, half)
    assert second.range == f"bytes={half}-"
    assert (second.status, second.body_bytes) == (206, size - half)


def test_partial_file_from_an_earlier_run_is_resumed(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    data = tiny.files[IMAGES]
    third = len(data) // 3
    tiny.dest.mkdir(parents=True)
    (tiny.dest / f".{IMAGES}.part").write_bytes(data[:third])

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    [request] = http_server.requests_for(f"/mnist/{IMAGES}")
    assert (request.range, request.status, request.body_bytes) == (f"bytes={third}-", 206, len(data) - third)


def test_server_ignoring_range_gets_the_whole_file_written_afresh(tiny, http_server):
    data = tiny.files[IMAGES]
    base = serve_dataset(http_server, tiny, **{IMAGES: ("ignore-range",)})
    tiny.dest.mkdir(parents=True)
    (tiny.dest / f".{IMAGES}.part").write_bytes(data[:100])

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    [request] = http_server.requests_for(f"/mnist/{IMAGES}")
    assert (request.range, request.status, request.body_bytes) == ("bytes=100-", 200, len(data))


def test_garbage_partial_file_fails_after_resume_and_is_fetched_again_from_scratch(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    tiny.dest.mkdir(parents=True)
    (tiny.dest / f".{IMAGES}.part").write_bytes(b"\x00" * 500)

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    resumed, fresh = http_server.requests_for(f"/mnist/{IMAGES}")
    assert (resumed.range, resumed.status) == ("bytes=500-", 206)
    assert (fresh.range, fresh.status, fresh.body_bytes) == (None, 200, len(tiny.files[IMAGES]))


def test_503_once_then_success(tiny, http_server):
    base = serve_dataset(http_server, tiny, **{LABELS: ("503", "normal")})

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert [r.status for r in http_server.requests_for(f"/mnist/{LABELS}")] == [503, 200]


def test_retries_wait_with_exponential_backoff_then_give_up(tiny, http_server, monkeypatch):
    waits = []
    monkeypatch.setattr(remote, "time", types.SimpleNamespace(sleep=waits.append))
    base = serve_dataset(http_server, tiny, **{IMAGES: ("503",)})
    settings = DownloadSettings(retries=3, backoff=0.5)

    with pytest.raises(DownloadError) as error:
        ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, [base]),
                    progress=False, settings=settings)

    assert waits == [0.5, 1.0, 2.0]
    assert len(http_server.requests_for(f"/mnist/{IMAGES}")) == 4
    assert "HTTP 503 Service Unavailable; gave up after 4 attempts" in str(error.value)
    assert not (tiny.dest / IMAGES).exists()


def test_silent_server_times_out_and_the_next_mirror_delivers(tiny, http_server):
    stalled = serve_dataset(http_server, tiny, prefix="slow/", **{IMAGES: ("stall",)})
    settings = DownloadSettings(connect_timeout=2, read_timeout=0.2, retries=1, backoff=0)

    path = ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, [stalled, str(tiny.source)]),
                       progress=False, settings=settings)

    assert path.read_bytes() == tiny.files[IMAGES]
    assert [r.behaviour for r in http_server.requests] == ["stall", "stall"]


# --- rejected data --------------------------------------------------------------------------------

def test_corrupt_bytes_are_rejected_and_leave_nothing_behind(tiny, http_server):
    base = serve_dataset(http_server, tiny, **{IMAGES: ("corrupt",)})

    result = run_download(tiny, "--mirror", base)

    assert_clean_failure(result)
    assert "checksum mismatch" in result.output
    assert not (tiny.dest / IMAGES).exists()
    assert leftovers(tiny) == []


def test_corrupt_bytes_on_one_mirror_then_good_copy_from_the_next(tiny, http_server):
    bad = serve_dataset(http_server, tiny, prefix="bad/", **{name: ("corrupt",) for name in tiny.files})

    result = run_download(tiny, "--mirror", bad, "--mirror", str(tiny.source))

    assert result.exit_code == 0, result.output
    assert_complete(tiny)


@pytest.mark.parametrize("behaviour", ["html", "html-as-data"])
def test_html_page_with_status_200_is_rejected(tiny, http_server, behaviour):
    base = serve_dataset(http_server, tiny, **{IMAGES: (behaviour,)})

    result = run_download(tiny, "--mirror", base)

    assert_clean_failure(result)
    assert f"{base}mnist/{IMAGES}: got an HTML page instead of data" in result.output
    assert not (tiny.dest / IMAGES).exists()
    assert leftovers(tiny) == []


def test_all_mirrors_down_names_each_mirror_with_its_reason(tiny, http_server, tmp_path):
    serve_dataset(http_server, tiny, prefix="html/", **{IMAGES: ("html",)})
    serve_dataset(http_server, tiny, prefix="corrupt/", **{IMAGES: ("corrupt",)})
    serve_dataset(http_server, tiny, prefix="slow/", **{IMAGES: ("stall",)})
    serve_dataset(http_server, tiny, prefix="trickle/", **{IMAGES: ("trickle",)})
    serve_dataset(http_server, tiny, prefix="endless/", **{IMAGES: ("endless",)})
    serve_dataset(http_server, tiny, prefix="huge/", **{IMAGES: ("huge-length",)})
    refused = f"http://127.0.0.1:{closed_port()}/"
    wrong_folder = tmp_path / "wrong-folder"
    (wrong_folder / "mnist").mkdir(parents=True)
    (wrong_folder / "mnist" / IMAGES).write_bytes(tiny.files[LABELS])
    mirrors = {
        http_server.url + "missing/": "HTTP 404 Not Found",
        http_server.url + "html/": "got an HTML page instead of data",
        http_server.url + "corrupt/": "checksum mismatch",
        http_server.url + "slow/": "timed out",
        http_server.url + "trickle/": "too slow",
        http_server.url + "endless/": f"sent more than the {len(tiny.files[IMAGES])} bytes of the official file",
        http_server.url + "huge/": "announces 1099511627776 bytes",
        refused: "connection refused",
        str(tmp_path / "empty-folder"): "no such file",
        str(wrong_folder): "checksum mismatch",
    }
    args = [arg for mirror in mirrors for arg in ("--mirror", mirror)]
    env = {"MLKNOBS_DOWNLOAD_TIMEOUT": "0.3", "MLKNOBS_DOWNLOAD_RETRIES": "1",
           "MLKNOBS_DOWNLOAD_SPEED_LIMIT": "1000", "MLKNOBS_DOWNLOAD_SPEED_TIME": "0.5"}

    with time_limit(20):
        result = run_download(tiny, *args, env=env)

    assert_clean_failure(result)
    lines = result.output.splitlines()
    for mirror, reason in mirrors.items():
        [line] = [line for line in lines if mirror in line]
        assert reason in line, line
        assert len(line) < 200, line
    assert "--mirror FOLDER" in lines[-1]
    assert not (tiny.dest / IMAGES).exists()
    assert leftovers(tiny) == []


def test_local_mirror_pointing_at_the_dataset_folder_gets_a_hint(tiny):
    result = run_download(tiny, "--mirror", str(tiny.source / "mnist"))

    assert_clean_failure(result)
    assert f"pass its parent folder {tiny.source} as the mirror" in result.output


# --- files already present ------------------------------------------------------------------------

def test_verified_files_are_not_fetched_again_unless_forced(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    assert run_download(tiny, "--mirror", base).exit_code == 0
    http_server.clear_log()

    again = run_download(tiny, "--mirror", base)

    assert again.exit_code == 0, again.output
    assert http_server.requests == []

    forced = run_download(tiny, "--mirror", base, "--force")

    assert forced.exit_code == 0, forced.output
    assert sorted(r.path for r in http_server.requests) == sorted(f"/mnist/{n}" for n in tiny.files)
    assert_complete(tiny)


def test_corrupt_file_under_the_final_name_is_replaced(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    assert run_download(tiny, "--mirror", base).exit_code == 0
    (tiny.dest / LABELS).write_bytes(b"not the labels")
    http_server.clear_log()

    result = run_download(tiny, "--mirror", base)

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert [r.path for r in http_server.requests] == [f"/mnist/{LABELS}"]


def test_corrupt_file_under_the_final_name_is_reported_when_no_mirror_helps(tiny):
    tiny.dest.mkdir(parents=True)
    (tiny.dest / IMAGES).write_bytes(b"edited by hand")

    result = run_download(tiny, "--mirror", str(tiny.data_dir / "nowhere"))

    assert_clean_failure(result)
    assert f"{tiny.dest / IMAGES}: present but fails its SHA-256 check" in result.output


# --- bad settings -----------------------------------------------------------------------------------

def test_unsupported_mirror_scheme_is_a_clean_error(tiny):
    result = run_download(tiny, "--mirror", "ftp://example.org/data/")

    assert_clean_failure(result, exit_code=2)
    assert "unsupported mirror 'ftp://example.org/data/'" in result.output


def test_unusable_data_dir_is_a_clean_error(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = CliRunner().invoke(cli, ["download", "--data-dir", str(blocker / "data"), "--mirror", str(tiny.source)])

    assert_clean_failure(result)
    assert f"cannot use data folder {blocker / 'data' / 'mnist'}" in result.output


BAD_ENVIRONMENT = [
    ("MLKNOBS_DOWNLOAD_BACKOFF", "soon"), ("MLKNOBS_DOWNLOAD_BACKOFF", "1e308"), ("MLKNOBS_DOWNLOAD_BACKOFF", "61"),
    ("MLKNOBS_DOWNLOAD_BACKOFF", "inf"),
    ("MLKNOBS_DOWNLOAD_RETRIES", "-1"), ("MLKNOBS_DOWNLOAD_RETRIES", "2.5"), ("MLKNOBS_DOWNLOAD_RETRIES", "21"),
    ("MLKNOBS_DOWNLOAD_RETRIES", "5000"), ("MLKNOBS_DOWNLOAD_RETRIES", "9" * 5000),
    ("MLKNOBS_DOWNLOAD_TIMEOUT", "0"), ("MLKNOBS_DOWNLOAD_TIMEOUT", "nan"), ("MLKNOBS_DOWNLOAD_TIMEOUT", "1e400"),
    ("MLKNOBS_DOWNLOAD_DEADLINE", "0"), ("MLKNOBS_DOWNLOAD_DEADLINE", "-inf"), ("MLKNOBS_DOWNLOAD_DEADLINE", "1e9"),
    ("MLKNOBS_DOWNLOAD_SPEED_LIMIT", "-1"), ("MLKNOBS_DOWNLOAD_SPEED_LIMIT", "1.5"),
    ("MLKNOBS_DOWNLOAD_SPEED_LIMIT", "1" + "0" * 30),
    ("MLKNOBS_DOWNLOAD_SPEED_TIME", "0"), ("MLKNOBS_DOWNLOAD_SPEED_TIME", "nan"),
    ("MLKNOBS_DOWNLOAD_SPEED_TIME", "3601"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_ENVIRONMENT, ids=[f"{v}={x[:8]}" for v, x in BAD_ENVIRONMENT])
def test_bad_download_setting_in_the_environment_is_a_one_line_error_naming_it(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(DownloadSettingsError) as error:
        DownloadSettings.from_env()

    assert isinstance(error.value, MlknobsError) and isinstance(error.value, ValueError)
    assert error.value.name == variable
    message = str(error.value)
    assert message.startswith(f"{variable} must be ") and "\n" not in message
    assert len(message) < 200 or value[:20] in message


@pytest.mark.parametrize(("variable", "value"), [("MLKNOBS_DOWNLOAD_BACKOFF", "soon"),
                                                 ("MLKNOBS_DOWNLOAD_RETRIES", "-1"),
                                                 ("MLKNOBS_DOWNLOAD_RETRIES", "2.5"),
                                                 ("MLKNOBS_DOWNLOAD_RETRIES", "100000"),
                                                 ("MLKNOBS_DOWNLOAD_BACKOFF", "1e308"),
                                                 ("MLKNOBS_DOWNLOAD_TIMEOUT", "0"),
                                                 ("MLKNOBS_DOWNLOAD_TIMEOUT", "nan"),
                                                 ("MLKNOBS_DOWNLOAD_DEADLINE", "-5"),
                                                 ("MLKNOBS_DOWNLOAD_SPEED_LIMIT", "fast"),
                                                 ("MLKNOBS_DOWNLOAD_SPEED_TIME", "1e400")])
def test_bad_download_setting_in_the_environment_is_a_clean_error(tiny, variable, value):
    result = run_download(tiny, "--mirror", str(tiny.source), env={variable: value})

    assert_clean_failure(result, exit_code=2)
    assert f"{variable} must be" in result.output
    assert repr(value) in result.output


@pytest.mark.parametrize("field", ["retries", "backoff", "deadline", "speed_limit", "speed_time", "read_timeout"])
@pytest.mark.parametrize("value", [10 ** 12, -1, float("nan"), float("inf")])
def test_settings_given_in_code_are_checked_too(field, value):
    with pytest.raises(DownloadSettingsError, match=f"^{field} must be "):
        DownloadSettings(**{field: value})


def test_download_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_TIMEOUT", "2.5")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_RETRIES", "0")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_BACKOFF", "0.1")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_DEADLINE", "90")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_SPEED_LIMIT", "0")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_SPEED_TIME", "12.5")

    assert DownloadSettings.from_env() == DownloadSettings(connect_timeout=2.5, read_timeout=2.5,
                                                           retries=0, backoff=0.1, deadline=90,
                                                           speed_limit=0, speed_time=12.5)


def test_download_setting_defaults_suit_a_slow_link():
    defaults = DownloadSettings()
    largest = max(max(spec.sizes.values()) for spec in datasets.DATASETS.values())

    assert (defaults.speed_limit, defaults.speed_time) == (1024, 30)
    assert largest / defaults.deadline < 100_000   # 100 KB/s fetches the largest official file in time


def test_waits_between_attempts_are_capped(tiny, http_server, monkeypatch):
    waits = []
    monkeypatch.setattr(remote, "time", types.SimpleNamespace(sleep=waits.append))
    base = serve_dataset(http_server, tiny, **{IMAGES: ("503",)})
    settings = DownloadSettings(retries=20, backoff=60, deadline=24 * 3600)

    message = failure_of(tiny, base, settings=settings)

    assert waits == [60.0] * 20
    assert "gave up after 21 attempts" in message


def test_the_deadline_covers_the_waits_between_attempts(tiny, http_server, monkeypatch):
    waits = []
    monkeypatch.setattr(remote, "time", types.SimpleNamespace(sleep=waits.append))
    base = serve_dataset(http_server, tiny, **{IMAGES: ("503",)})
    settings = DownloadSettings(retries=10, backoff=1, deadline=1.5)

    message = failure_of(tiny, base, settings=settings)

    assert waits == [1.0]   # the next wait (2 s) would end past the deadline
    assert "HTTP 503 Service Unavailable; no time left for another attempt within the 1.5 s deadline" in message


# --- mirror addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("http://host/data", "http://host/data/mnist/t.gz"),
    ("https://host/data/", "https://host/data/mnist/t.gz"),
    ("/srv/data", str(Path("/srv/data/mnist/t.gz"))),
    ("file:///srv/my%20data", str(Path("/srv/my data/mnist/t.gz"))),
])
def test_user_mirror_locates_files_in_a_per_dataset_folder(text, expected):
    assert parse_mirror(text).locate("mnist", "t.gz") == expected


def test_builtin_mirror_appends_the_file_name_directly():
    assert Mirror("https://host/mnist/", per_dataset=False).locate("mnist", "t.gz") == "https://host/mnist/t.gz"


@pytest.mark.parametrize("text", ["", "   ", "ftp://host/", "s3://bucket/"])
def test_parse_mirror_rejects_what_it_cannot_fetch(text):
    with pytest.raises(ValueError):
        parse_mirror(text)


def test_unknown_host_is_not_retried(tiny, monkeypatch):
    # Resolving a real name would leave the machine; make every lookup fail the way DNS does offline.
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    waits = []
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(remote, "time", types.SimpleNamespace(sleep=waits.append))

    with pytest.raises(DownloadError) as error:
        ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, ["https://mirror.example/"]),
                    progress=False, settings=DownloadSettings(retries=3, backoff=1))

    assert "https://mirror.example/mnist/train-images-idx3-ubyte.gz: host name not found" in str(error.value)
    assert waits == []


# --- hostile mirrors: slow, endless, too large ----------------------------------------------------

def test_trickling_body_is_abandoned_below_the_speed_limit_and_the_next_mirror_delivers(tiny, http_server):
    trickle = serve_dataset(http_server, tiny, prefix="trickle/", **{IMAGES: ("trickle",)})
    started = time.monotonic()

    with time_limit(10):
        path = fetch_images(tiny, trickle, str(tiny.source), settings=replace(IMPATIENT, deadline=60))

    assert path.read_bytes() == tiny.files[IMAGES]
    assert time.monotonic() - started < 5          # the speed rule (0.5 s), not the deadline (60 s)
    assert [r.behaviour for r in http_server.requests] == ["trickle"]   # not retried on the same mirror
    assert leftovers(tiny) == []


def test_trickling_body_is_reported_as_too_slow(tiny, http_server):
    trickle = serve_dataset(http_server, tiny, **{IMAGES: ("trickle",)})
    started = time.monotonic()

    with time_limit(10):
        message = failure_of(tiny, trickle)

    assert time.monotonic() - started < 3

    assert f"{trickle}mnist/{IMAGES}: too slow: " in message
    assert "below the limit of 1000 B/s" in message
    assert leftovers(tiny) == []


def test_trickling_headers_fail_the_speed_rule(tiny, http_server):
    # Each header byte arrives well within the read timeout, so only the watchdog can end this.
    dribble = serve_dataset(http_server, tiny, **{IMAGES: ("trickle-headers",)})
    started = time.monotonic()

    with time_limit(10):
        message = failure_of(tiny, dribble, settings=replace(IMPATIENT, deadline=60))

    assert time.monotonic() - started < 3

    assert f"{dribble}mnist/{IMAGES}: too slow: 0 B/s for 0.5 s" in message
    assert leftovers(tiny) == []


@pytest.mark.parametrize("behaviour", ["trickle-headers", "trickle"])
def test_the_deadline_bounds_headers_and_body_without_any_speed_limit(tiny, http_server, behaviour):
    base = serve_dataset(http_server, tiny, **{IMAGES: (behaviour,)})
    settings = replace(IMPATIENT, speed_limit=0, deadline=1)
    started = time.monotonic()

    with time_limit(10):
        message = failure_of(tiny, base, settings=settings)

    assert 1 <= time.monotonic() - started < 5
    assert f"{base}mnist/{IMAGES}: took longer than the 1 s deadline (" in message
    assert leftovers(tiny) == []


def test_slow_but_steady_mirror_is_not_abandoned(tiny, http_server):
    # About 120 KB/s: far above the speed limit, and done well within the deadline.
    base = serve_dataset(http_server, tiny, **{IMAGES: ("slow",)})

    path = fetch_images(tiny, base, settings=replace(IMPATIENT, speed_time=0.2))

    assert path.read_bytes() == tiny.files[IMAGES]


@pytest.mark.parametrize(("behaviour", "reason"), [
    ("endless", "sent more than the {size} bytes of the official file"),
    ("huge-length", "announces 1099511627776 bytes, more than the {size} bytes of the official file"),
])
def test_oversized_bodies_are_refused_and_the_next_mirror_delivers(tiny, http_server, behaviour, reason):
    hostile = serve_dataset(http_server, tiny, prefix="hostile/", **{IMAGES: (behaviour,)})
    size = len(tiny.files[IMAGES])

    with time_limit(10):
        message = failure_of(tiny, hostile)
        assert f"{hostile}mnist/{IMAGES}: {reason.format(size=size)}" in message
        assert leftovers(tiny) == []
        path = fetch_images(tiny, hostile, str(tiny.source))

    assert path.read_bytes() == tiny.files[IMAGES]
    assert leftovers(tiny) == []


def test_false_huge_length_is_refused_before_a_byte_is_written(tiny, http_server, monkeypatch):
    def must_not_write(*args, **kwargs):
        raise AssertionError("wrote the body of a response announcing too many bytes")

    monkeypatch.setattr(remote, "_save_body", must_not_write)
    base = serve_dataset(http_server, tiny, **{IMAGES: ("huge-length",)})

    with time_limit(10):
        message = failure_of(tiny, base)

    assert "announces 1099511627776 bytes" in message


def test_file_of_the_wrong_size_fails_its_check_and_says_so(tiny, http_server):
    shorter = tiny.files[IMAGES][:-10]
    http_server.serve(f"/mnist/{IMAGES}", shorter)

    message = failure_of(tiny, http_server.url)

    size = len(tiny.files[IMAGES])
    assert f"checksum mismatch (wrong size: {size - 10} bytes, expected {size})" in message


# --- hostile local mirrors ----------------------------------------------------------------------------

def _fifo(path: Path, data: bytes) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path, data: bytes) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path, data: bytes) -> None:
    path.mkdir()


def _sparse_10_gb(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.truncate(10 << 30)   # takes no disk space; reading it would take minutes


def _one_byte_too_many(path: Path, data: bytes) -> None:
    path.write_bytes(data + b"\0")


LOCAL_HAZARDS = [(_fifo, "is a FIFO (named pipe), not a regular file"),
                 (_dev_zero, "is a character device, not a regular file"),
                 (_directory, "is a directory, not a regular file"),
                 (_sparse_10_gb, "10737418240 bytes, more than the {size} bytes of the official file"),
                 (_one_byte_too_many, "{size_plus_1} bytes, more than the {size} bytes of the official file")]


@pytest.mark.parametrize(("make", "reason"), LOCAL_HAZARDS, ids=[m.__name__.strip("_") for m, _ in LOCAL_HAZARDS])
def test_local_mirror_file_that_is_special_or_too_large_is_refused_without_reading_it(tiny, tmp_path, make, reason):
    hostile = tmp_path / "hostile"
    (hostile / "mnist").mkdir(parents=True)
    make(hostile / "mnist" / IMAGES, tiny.files[IMAGES])
    size = len(tiny.files[IMAGES])

    with time_limit(10):
        message = failure_of(tiny, str(hostile))
        path = fetch_images(tiny, str(hostile), str(tiny.source))

    assert f"{hostile / 'mnist' / IMAGES}: {reason.format(size=size, size_plus_1=size + 1)}" in message
    assert path.read_bytes() == tiny.files[IMAGES]
    assert leftovers(tiny) == []


def test_local_file_that_grows_while_copied_is_cut_at_the_official_size(tiny, tmp_path, monkeypatch):
    # fstat said the size was right, then the file grew (or, like /proc files, it lied).
    real_fstat = os.fstat

    def shrunk(fd):
        info = real_fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_size > len(tiny.files[IMAGES]):
            return os.stat_result((info.st_mode, *tuple(info)[1:6], len(tiny.files[IMAGES]), *tuple(info)[7:]))
        return info

    hostile = tmp_path / "hostile"
    (hostile / "mnist").mkdir(parents=True)
    (hostile / "mnist" / IMAGES).write_bytes(tiny.files[IMAGES] * 3)
    monkeypatch.setattr(os, "fstat", shrunk)

    message = failure_of(tiny, str(hostile))

    assert f"more than the {len(tiny.files[IMAGES])} bytes of the official file" in message
    assert leftovers(tiny) == []


# --- temporary files --------------------------------------------------------------------------------------

def test_partial_file_from_a_killed_local_copy_is_restarted_and_replaced(tiny):
    tiny.dest.mkdir(parents=True)
    (tiny.dest / f".{IMAGES}.part").write_bytes(b"half of something else")

    path = fetch_images(tiny, str(tiny.source))

    assert path.read_bytes() == tiny.files[IMAGES]
    assert leftovers(tiny) == []


def test_partial_file_larger_than_the_whole_file_is_discarded_not_resumed(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    tiny.dest.mkdir(parents=True)
    (tiny.dest / f".{IMAGES}.part").write_bytes(b"\0" * (len(tiny.files[IMAGES]) + 1))

    fetch_images(tiny, base)

    [request] = http_server.requests_for(f"/mnist/{IMAGES}")
    assert request.range is None
    assert leftovers(tiny) == []


def test_temp_files_of_a_killed_run_are_removed_and_others_kept(tiny):
    tiny.dest.mkdir(parents=True)
    stale = [tiny.dest / f".{IMAGES}.k1ll3d_x.tmp", tiny.dest / f".{IMAGES}.part"]
    other = tiny.dest / f".{LABELS}.s0meone.tmp"    # another file's: its own writer may be alive
    for path in [*stale, other]:
        path.write_bytes(b"left behind")

    fetch_images(tiny, str(tiny.source))

    assert not any(path.exists() for path in stale)
    assert other.exists()


@pytest.mark.parametrize("behaviour", ["corrupt", "stall", "trickle", "endless", "huge-length", "cut"])
def test_failed_download_leaves_nothing_behind(tiny, http_server, behaviour):
    base = serve_dataset(http_server, tiny, **{IMAGES: (behaviour,)})
    started = time.monotonic()

    with time_limit(15):
        failure_of(tiny, base, settings=replace(IMPATIENT, read_timeout=0.3, retries=0))

    assert time.monotonic() - started < 5

    assert leftovers(tiny) == []   # no .part, no .tmp, no .lock


@pytest.mark.parametrize("local", [True, False], ids=["local", "http"])
def test_ctrl_c_mid_transfer_leaves_nothing_behind_and_releases_the_lock(tiny, http_server, monkeypatch, local):
    base = str(tiny.source) if local else serve_dataset(http_server, tiny, **{IMAGES: ("slow",)})
    real_write = partfile.write_part
    writes = []

    def interrupted(f, data, part):
        writes.append(len(data))
        real_write(f, data, part)
        raise KeyboardInterrupt

    monkeypatch.setattr(partfile, "write_part", interrupted)

    with pytest.raises(KeyboardInterrupt):
        fetch_images(tiny, base)

    assert writes and leftovers(tiny) == []
    monkeypatch.setattr(partfile, "write_part", real_write)
    with time_limit(10):
        assert fetch_images(tiny, base).read_bytes() == tiny.files[IMAGES]   # the lock was released


# --- the data folder ----------------------------------------------------------------------------------------

@contextmanager
def read_only(folder: Path):
    """Make `folder` read-only, for root too (who writes through permission bits)."""
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    inside = str(folder)
    real_open, real_mkdir = os.open, os.mkdir

    def refuse_writes(path, flags, *args, **kwargs):
        if str(path).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def refuse_mkdir(path, *args, **kwargs):
        if str(path).startswith(inside):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    try:
        with pytest.MonkeyPatch.context() as patch:
            if os.geteuid() == 0:
                patch.setattr(os, "open", refuse_writes)
                patch.setattr(os, "mkdir", refuse_mkdir)
            yield
    finally:
        folder.chmod(stat.S_IRWXU)


def test_read_only_data_dir_is_a_typed_error_naming_the_folder(tiny):
    tiny.data_dir.mkdir()

    with read_only(tiny.data_dir), pytest.raises(DataDirNotWritable) as error:
        fetch_images(tiny, str(tiny.source))

    assert isinstance(error.value, DownloadError)
    assert (error.value.folder, error.value.data_dir) == (tiny.dest, tiny.data_dir)
    assert error.value.reason == "Permission denied"
    assert str(error.value) == f"cannot use data folder {tiny.dest}: Permission denied"


def test_read_only_data_dir_holding_verified_files_needs_no_write(tiny):
    ensure_dataset(tiny.spec, tiny.data_dir, [str(tiny.source)], progress=False, settings=NO_WAIT)

    with read_only(tiny.dest):
        paths = ensure_dataset(tiny.spec, tiny.data_dir, [], progress=False, settings=NO_WAIT)

    assert sorted(paths) == sorted(tiny.files)
    assert_complete(tiny)


# --- concurrent runs ----------------------------------------------------------------------------------------

WORKER = """
import json, sys
from pathlib import Path
import requests  # imported before the start signal, so the workers really start together
from mlknobs.data.datasets import DatasetSpec
from mlknobs.data.download import DownloadSettings, ensure_dataset

spec, data_dir, mirror = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spec = DatasetSpec(name=spec["name"], sha256=spec["sha256"], sizes=spec["sizes"],
                   class_names=tuple(spec["class_names"]), mirrors=())
print("ready", flush=True)
sys.stdin.readline()
paths = ensure_dataset(spec, data_dir, [mirror], progress=False,
                       settings=DownloadSettings(connect_timeout=5, read_timeout=5, retries=0, backoff=0))
print(json.dumps(sorted(str(p) for p in paths.values())))
"""

HOLDER = """
import sys, time
from pathlib import Path
from mlknobs.data.download import file_lock

folder, name, then = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with file_lock(folder, name):
    print("locked", flush=True)
    if then == "hang":
        time.sleep(60)
    time.sleep(0.5)
    (folder / name).write_bytes(Path(sys.argv[4]).read_bytes())   # as if it had downloaded it
"""


def spawn(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def spec_json(spec: DatasetSpec) -> str:
    return json.dumps({"name": spec.name, "sha256": spec.sha256, "sizes": spec.sizes,
                       "class_names": list(spec.class_names)})


def test_concurrent_first_downloads_into_one_data_dir_all_succeed(tiny, http_server):
    base = serve_dataset(http_server, tiny, **{name: ("slow",) for name in tiny.files})
    workers = [spawn(WORKER, spec_json(tiny.spec), str(tiny.data_dir), base) for _ in range(4)]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n", worker.stderr.read()
        for worker in workers:   # all at once, so that they overlap on the slow server
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()

    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err
        assert json.loads(out) == sorted(str(tiny.dest / name) for name in tiny.files)
    assert_complete(tiny)   # no .part, .tmp or .lock left either
    for name in tiny.files:   # the others waited for the one fetching and found its verified copy
        assert len(http_server.requests_for(f"/mnist/{name}")) == 1


def test_a_second_process_waits_for_the_lock_then_finds_the_verified_file(tiny, tmp_path):
    tiny.dest.mkdir(parents=True)
    holder = spawn(HOLDER, str(tiny.dest), IMAGES, "finish", str(tiny.source / "mnist" / IMAGES))
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        with time_limit(30):
            # No mirror at all: the only way to succeed is to wait for the holder's copy.
            path = ensure_file(tiny.spec, IMAGES, tiny.data_dir, [], progress=False, settings=NO_WAIT)
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()

    assert path.read_bytes() == tiny.files[IMAGES]
    assert leftovers(tiny) == []


def test_a_killed_lock_holder_leaves_no_lock_and_its_partial_file_is_resumed(tiny, http_server):
    base = serve_dataset(http_server, tiny)
    data = tiny.files[IMAGES]
    tiny.dest.mkdir(parents=True)
    holder = spawn(HOLDER, str(tiny.dest), IMAGES, "hang", "-")
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        (tiny.dest / f".{IMAGES}.part").write_bytes(data[:1000])   # what it had fetched when killed
        (tiny.dest / f".{IMAGES}.abc123xy.tmp").write_bytes(b"its temp file")
    finally:
        holder.kill()   # SIGKILL: no cleanup runs; the kernel drops the flock
        holder.wait(timeout=30)

    with time_limit(10):
        path = fetch_images(tiny, base)

    assert path.read_bytes() == data
    [request] = http_server.requests_for(f"/mnist/{IMAGES}")
    assert request.range == "bytes=1000-"
    assert leftovers(tiny) == []


def test_a_file_system_without_flock_still_downloads(tiny, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(37, "No locks available")   # ENOLCK: NFSv3 without lockd

    monkeypatch.setattr(fcntl, "flock", no_locks)

    assert fetch_images(tiny, str(tiny.source)).read_bytes() == tiny.files[IMAGES]
    assert leftovers(tiny) == []


def test_the_lock_is_reentrant_within_a_thread_and_excludes_other_threads(tmp_path):
    import threading

    entered = threading.Event()
    with file_lock(tmp_path, "x.gz") as held:
        with file_lock(tmp_path, "x.gz") as again:   # a caller wrapping ensure_file, then ensure_file
            assert held and again

        def other():
            with file_lock(tmp_path, "x.gz"):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3)
    thread.join(timeout=10)

    assert entered.is_set()
    assert list(tmp_path.iterdir()) == []   # the lock file went with the last holder


def test_the_download_lock_is_the_output_lock_algorithm(tmp_path):
    """One lock for both: while a download holds x.gz, a writer of x.gz is refused, naming this process."""
    from mlknobs.errors import OutputBusy
    from mlknobs.files import OutputLock

    with file_lock(tmp_path, "x.gz"):
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path / "x.gz").acquire()
    with OutputLock(tmp_path / "x.gz") as output_lock:    # the download's release really let go
        assert output_lock.held
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", [lambda p: p.symlink_to("/dev/null"), os.mkfifo], ids=["symlink", "fifo"])
def test_a_lock_file_that_is_not_a_regular_file_is_a_data_dir_error_naming_it(tiny, make, no_hang):
    tiny.dest.mkdir(parents=True)
    make(tiny.dest / f".{IMAGES}.lock")

    with pytest.raises(DataDirNotWritable) as error:
        fetch_images(tiny, str(tiny.source))

    assert f".{IMAGES}.lock is a" in str(error.value) and "remove it" in str(error.value)
    assert not (tiny.dest / IMAGES).exists()
