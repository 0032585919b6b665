"""`mlknobs download` and mlknobs.data.download against a loopback HTTP server and local mirrors.

A tiny generated dataset stands in for MNIST: its files are served by tests/httpserver.py (or sit
in a local folder) and its SHA-256 sums replace the official ones for the test. Nothing here
touches the internet: the stand-in spec has no built-in mirrors unless a test gives it loopback ones.
"""

from __future__ import annotations

import hashlib
import socket
import types
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_idx_dataset

from mlknobs.data import datasets, download
from mlknobs.cli import cli
from mlknobs.data.datasets import DatasetSpec
from mlknobs.data.download import DownloadSettings, Mirror, ensure_dataset, ensure_file, mirrors_for, parse_mirror
from mlknobs.errors import DownloadError

IMAGES = "train-images-idx3-ubyte.gz"
LABELS = "train-labels-idx1-ubyte.gz"
NO_WAIT = DownloadSettings(connect_timeout=2, read_timeout=2, retries=2, backoff=0)


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


def assert_clean_failure(result) -> None:
    """Exit 1 through click's error path: a message, never a traceback."""
    assert result.exit_code == 1, result.output
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


def test_builtin_mirrors_come_after_user_mirrors_and_use_the_flat_layout(tiny, http_server, monkeypatch):
    for name, data in tiny.files.items():
        http_server.serve(f"/builtin/{name}", data)
    spec = replace(tiny.spec, mirrors=(http_server.url + "builtin/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)

    result = run_download(tiny, "--mirror", http_server.url + "user/")

    assert result.exit_code == 0, result.output
    assert_complete(tiny)
    assert [r.path for r in http_server.requests][:2] == [f"/user/mnist/{IMAGES}", f"/builtin/{IMAGES}"]


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
    monkeypatch.setattr(download, "time", types.SimpleNamespace(sleep=waits.append))
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
    refused = f"http://127.0.0.1:{closed_port()}/"
    wrong_folder = tmp_path / "wrong-folder"
    (wrong_folder / "mnist").mkdir(parents=True)
    (wrong_folder / "mnist" / IMAGES).write_bytes(tiny.files[LABELS])
    mirrors = {
        http_server.url + "missing/": "HTTP 404 Not Found",
        http_server.url + "html/": "got an HTML page instead of data",
        http_server.url + "corrupt/": "checksum mismatch",
        http_server.url + "slow/": "timed out",
        refused: "connection refused",
        str(tmp_path / "empty-folder"): "no such file",
        str(wrong_folder): "checksum mismatch",
    }
    args = [arg for mirror in mirrors for arg in ("--mirror", mirror)]
    env = {"MLKNOBS_DOWNLOAD_TIMEOUT": "0.3", "MLKNOBS_DOWNLOAD_RETRIES": "1"}

    result = run_download(tiny, *args, env=env)

    assert_clean_failure(result)
    lines = result.output.splitlines()
    for mirror, reason in mirrors.items():
        [line] = [line for line in lines if mirror in line]
        assert reason in line, line
        assert len(line) < 200, line
    assert "--mirror FOLDER" in lines[-1]
    assert not (tiny.dest / IMAGES).exists()


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

    assert_clean_failure(result)
    assert "unsupported mirror 'ftp://example.org/data/'" in result.output


def test_unusable_data_dir_is_a_clean_error(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = CliRunner().invoke(cli, ["download", "--data-dir", str(blocker / "data"), "--mirror", str(tiny.source)])

    assert_clean_failure(result)
    assert f"cannot use data folder {blocker / 'data' / 'mnist'}" in result.output


@pytest.mark.parametrize(("variable", "value"), [("MLKNOBS_DOWNLOAD_BACKOFF", "soon"),
                                                 ("MLKNOBS_DOWNLOAD_RETRIES", "-1"),
                                                 ("MLKNOBS_DOWNLOAD_RETRIES", "2.5"),
                                                 ("MLKNOBS_DOWNLOAD_TIMEOUT", "0"),
                                                 ("MLKNOBS_DOWNLOAD_TIMEOUT", "nan")])
def test_bad_download_knob_in_the_environment_is_a_clean_error(tiny, variable, value):
    result = run_download(tiny, "--mirror", str(tiny.source), env={variable: value})

    assert_clean_failure(result)
    assert f"{variable} must be" in result.output
    assert repr(value) in result.output


def test_download_knobs_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_TIMEOUT", "2.5")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_RETRIES", "0")
    monkeypatch.setenv("MLKNOBS_DOWNLOAD_BACKOFF", "0.1")

    assert DownloadSettings.from_env() == DownloadSettings(connect_timeout=2.5, read_timeout=2.5,
                                                           retries=0, backoff=0.1)


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
    monkeypatch.setattr(download, "time", types.SimpleNamespace(sleep=waits.append))

    with pytest.raises(DownloadError) as error:
        ensure_file(tiny.spec, IMAGES, tiny.data_dir, mirrors_for(tiny.spec, ["https://mirror.example/"]),
                    progress=False, settings=DownloadSettings(retries=3, backoff=1))

    assert "https://mirror.example/mnist/train-images-idx3-ubyte.gz: host name not found" in str(error.value)
    assert waits == []
