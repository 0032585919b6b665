"""`mlknobs serve` through the real CLI: the printed address, Ctrl-C, the warnings and one-line errors."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clirun import run
from mlknobs.serve import server

NEEDS_SERVE = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(name) is None for name in ("starlette", "uvicorn")),
    reason="the serve extra is not installed")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_help_lists_the_options_and_examples():
    result = run("serve", "--help")
    assert result.exit_code == 0
    for text in ("--model", "--host", "--port", "--open", "mlknobs serve --open", "0 picks a free one"):
        assert text in result.output


def test_without_starlette_the_extra_is_named(synthetic_model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)
    result = run("serve", "--model", synthetic_model_path)
    assert result.exit_code == 1
    assert result.stderr.strip() == ('Error: mlknobs serve needs starlette, which is not installed: install the serve '
                                     'extra: pip install "mlknobs[serve]" (from a clone: pip install ".[serve]")')


@NEEDS_SERVE
def test_a_missing_model_is_one_line(tmp_path):
    result = run("serve", "--model", tmp_path / "none.npz", "--port", "0")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: no model file at {tmp_path / 'none.npz'}: train one with "
                                     "`mlknobs train` (or point --model / MLKNOBS_MODEL at one)")


@NEEDS_SERVE
def test_a_damaged_model_is_one_line(tmp_path):
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    result = run("serve", "--model", damaged, "--port", "0")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@NEEDS_SERVE
def test_a_port_in_use_is_one_line_with_a_hint(synthetic_model_path):
    with server.listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        result = run("serve", "--model", synthetic_model_path, "--port", port)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: cannot listen on 127.0.0.1 port {port}: Address already in use; "
                                     f"pick another --port (0 picks a free one)")


@NEEDS_SERVE
def test_serve_prints_its_address_answers_and_stops_on_ctrl_c_with_exit_0(synthetic_model_path):
    from serving import serve_process

    with serve_process("--model", synthetic_model_path, "--port", "0") as served:
        assert served.first_line == f"mlknobs serve: {served.url} (Ctrl-C to stop)\n"
        assert served.url.startswith("http://127.0.0.1:") and not served.url.endswith(":0/")
        assert get_json(served.url + "api/model")["architecture"]["hidden_size"] == 32
        code, out, err = served.interrupt()
    assert code == 0, err
    assert out == ""
    assert err.strip() == "mlknobs serve: stopped"


@NEEDS_SERVE
def test_a_host_beyond_loopback_is_warned_about(synthetic_model_path):
    from serving import serve_process

    with serve_process("--model", synthetic_model_path, "--host", "0.0.0.0", "--port", "0") as served:
        assert served.url.startswith("http://127.0.0.1:")         # reached from here through loopback
        assert get_json(served.url + "api/model")["dataset"] == "mnist"
        code, _, err = served.interrupt()
    assert code == 0
    assert err.splitlines()[0] == ("Warning: listening on 0.0.0.0, not only on this machine: anyone who can "
                                   "reach it can use the page and read the model's metadata")


@NEEDS_SERVE
def test_open_opens_the_page_in_the_browser(synthetic_model_path, tmp_path, monkeypatch):
    from serving import serve_process

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys, pathlib\npathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n")
    monkeypatch.setenv("BROWSER", f"{sys.executable} {browser} %s")     # webbrowser runs $BROWSER
    with serve_process("--model", synthetic_model_path, "--port", "0", "--open") as served:
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        code, _, _ = served.interrupt()
    assert opened.read_text() == served.url
    assert code == 0


@NEEDS_SERVE
@pytest.mark.parametrize(("args", "data_dir", "mirrors"), [
    ((), None, ()),
    (("--data-dir", "my data", "--mirror", "/mirrors/a", "--mirror", "builtin"), Path("my data"), ("/mirrors/a", "builtin")),
])
def test_the_training_panel_gets_the_data_options_that_were_given(synthetic_model_path, monkeypatch, args, data_dir,
                                                                 mirrors):
    """Only what was given: the page's resume command then carries exactly these (a default stays out)."""
    seen = {}

    def stopped_at_once(app, sock, limits):
        seen["data"] = app.state.trainer.data
        raise KeyboardInterrupt

    monkeypatch.setattr(server, "run", stopped_at_once)
    result = run("serve", "--model", synthetic_model_path, "--port", "0", *args)
    assert result.exit_code == 0, result.output
    assert (seen["data"].data_dir, seen["data"].mirrors) == (data_dir, mirrors)
