"""The web app's JSON API, page and static files (mlknobs.serve.app), through Starlette's TestClient
and through a real uvicorn on a loopback port; the report behind it (mlknobs.serve.report)."""

from __future__ import annotations

import http.client
import json
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the test extra)")

import pictures
from clirun import run
from mlknobs.errors import ImageError
from mlknobs.io.modelfile import load_model
from mlknobs.nn.model import Network
from mlknobs.serve import report, server
from mlknobs.serve.app import MAX_UPLOAD_BYTES, PICTURE_NAME, SECURITY_HEADERS, STATIC, create_app
from mlknobs.vision.classify import classify
from mlknobs.vision.images import read_input
from serving import uvicorn_thread

# Newer Starlette prefers httpx2 for its TestClient and warns about httpx, which it still supports.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PREDICT_KEYS = {"label", "name", "confidence", "probabilities", "top_k"}


class ImageTypedError(ImageError):
    """A picture error of a kind app.py has never heard of: still the picture's fault, a 400."""


@pytest.fixture(scope="module")
def model_path(synthetic_model_path) -> Path:
    return synthetic_model_path


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def app(model, model_path):
    return create_app(model, model_path)


@pytest.fixture(scope="module")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app) as client:      # runs the lifespan (BLAS pinned) like uvicorn does
        yield client


@pytest.fixture(scope="module")
def digit_pictures(synthetic_splits) -> list[tuple[int, bytes]]:
    """(label, picture bytes): test digits redrawn in every style users' pictures come in."""
    _, test = synthetic_splits
    rng = np.random.default_rng(7)
    return [(int(test.labels[i]), style(test.images[i], rng)) for i, style in enumerate(pictures.STYLES)]


def png_of(digit: np.ndarray, rng) -> bytes:
    return pictures.dark_on_light_png(digit, rng)


# --- POST /api/predict: good pictures ----------------------------------------------------------------

def test_a_picture_gets_predicts_report_for_the_input_predict_makes(client, model, digit_pictures):
    for _, data in digit_pictures:
        response = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        answer = response.json()
        pixels = read_input(data, model.dataset)
        assert {k: answer[k] for k in PREDICT_KEYS} == classify(model, pixels, report.TOP_K)
        assert answer["input"] == pixels.reshape(28, 28).tolist()
        assert set(answer) == PREDICT_KEYS | {"input", "hidden"}


def test_the_answer_is_what_predict_json_prints(client, model_path, digit_pictures, tmp_path):
    _, data = digit_pictures[0]
    picture = tmp_path / "digit.png"
    picture.write_bytes(data)
    printed = json.loads(run("predict", "--json", "--model", model_path, picture).output)
    answer = client.post("/api/predict", content=data).json()
    assert {k: answer[k] for k in PREDICT_KEYS} == {k: printed[k] for k in PREDICT_KEYS}


def test_most_pictures_are_read_as_their_digit(client, synthetic_splits):
    """Not a test of the model, a test that nothing is lost on the way (a ~94 % model)."""
    _, test = synthetic_splits
    rng = np.random.default_rng(1)
    right = sum(client.post("/api/predict", content=png_of(test.images[i], rng)).json()["label"] == test.labels[i]
                for i in range(40))
    assert right >= 32


def test_hidden_units_are_the_strongest_with_their_weight_tiles(client, model, digit_pictures):
    _, data = digit_pictures[0]
    hidden = client.post("/api/predict", content=data).json()["hidden"]
    assert len(hidden) == report.TOP_UNITS
    z1, a1 = report.hidden_layer(model, read_input(data, model.dataset))
    assert [h["unit"] for h in hidden] == list(np.argsort(-z1, kind="stable")[:report.TOP_UNITS])
    activations = [h["activation"] for h in hidden]
    assert activations == sorted(activations, reverse=True)
    w1 = model.params.w1
    for h in hidden:
        assert h["activation"] == pytest.approx(a1[h["unit"]], abs=1e-4)
        assert h["z"] == pytest.approx(z1[h["unit"]], abs=1e-3)
        assert set(h) == {"unit", "activation", "z", "weights"}
        tile = np.array(h["weights"])
        assert tile.shape == (28, 28)
        assert np.abs(tile).max() == pytest.approx(1.0)               # scaled to its own max |w|
        expected = w1[:, h["unit"]].reshape(28, 28) / np.abs(w1[:, h["unit"]]).max()
        np.testing.assert_allclose(tile, expected, atol=6e-4)          # 3 decimals


def test_hidden_layer_is_the_networks_own(model, digit_pictures):
    pixels = read_input(digit_pictures[1][1], model.dataset)
    net = Network(model.params, model.loss, max_batch=1)
    net.forward(net.load_pixels(pixels.reshape(1, -1), model.scaling))
    _, a1 = report.hidden_layer(model, pixels)
    np.testing.assert_allclose(a1, net.a1[0], rtol=1e-5, atol=1e-6)


def test_a_form_upload_gives_the_same_answer(client, digit_pictures):
    _, data = digit_pictures[0]
    raw = client.post("/api/predict", content=data).json()
    form = client.post("/api/predict", files={"picture": ("my digit.png", data, "image/png")})
    assert form.status_code == 200, form.text
    assert form.json() == raw


def test_a_form_names_its_file_in_errors_and_needs_exactly_one(client, digit_pictures):
    bad = client.post("/api/predict", files={"picture": ("notes.png", b"not a picture", "image/png")})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("notes.png: not an image")
    boundary = "mlknobs-test-boundary"
    fields_only = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"
                   f"--{boundary}--\r\n").encode()
    no_file = client.post("/api/predict", content=fields_only,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert no_file.status_code == 400
    assert no_file.json()["error"].startswith("the form holds no file")
    two = client.post("/api/predict", files=[("a", ("a.png", digit_pictures[0][1])), ("b", ("b.png", b"x"))])
    assert two.status_code == 400 and "error" in two.json()


# --- POST /api/predict: bad pictures, as predict reports them -----------------------------------------

def test_every_bad_picture_is_a_400_with_predicts_message(client, model, tmp_path):
    expected_words = pictures.bad_inputs(tmp_path)
    sent = 0
    for name, word in expected_words.items():
        path = tmp_path / name
        if not path.is_file():            # missing.png, folder.png: only a path can be those
            continue
        data = path.read_bytes()
        response = client.post("/api/predict", content=data)
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert word in error, (name, error)
        with pytest.raises(ImageError) as predicts:
            read_input(data, model.dataset, name=PICTURE_NAME)
        assert error == str(predicts.value)
        sent += 1
    assert sent == 8          # empty, not an image, truncated PNG and JPEG, bomb, huge, blank, faint


def test_the_server_answers_after_every_bad_request(client, tmp_path, digit_pictures):
    pictures.bad_inputs(tmp_path)
    for path in sorted(tmp_path.iterdir()):
        if path.is_file():
            client.post("/api/predict", content=path.read_bytes())
    assert client.post("/api/predict", content=digit_pictures[0][1]).status_code == 200


# --- size limit -----------------------------------------------------------------------------------------

def test_a_body_above_the_limit_is_a_413_naming_the_limit(client):
    response = client.post("/api/predict", content=b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "picture: 8,388,609 bytes is too large (limit 8 MiB)"
    assert client.post("/api/predict", content=b"\0" * MAX_UPLOAD_BYTES).status_code == 400   # at the limit: read


def test_a_form_above_the_limit_is_a_413(client):
    response = client.post("/api/predict", files={"picture": ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1))})
    assert response.status_code == 413


def scope_for(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


def call_asgi(app, scope: dict, chunks: int, chunk_size: int = 64 * 1024) -> tuple[int, dict, int]:
    """Send a body of `chunks` chunks to the app; (status, JSON answer, chunks the app took)."""
    taken, messages = 0, []

    async def receive():
        nonlocal taken
        if taken == chunks:
            return {"type": "http.disconnect"}
        taken += 1
        return {"type": "http.request", "body": b"\0" * chunk_size, "more_body": taken < chunks}

    async def send(message):
        messages.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(body), taken


def test_a_body_without_length_stops_being_read_just_past_the_limit(app):
    """A chunked upload of 64 MiB is refused after the 129th chunk of 64 KiB, not after all 1024."""
    status, answer, taken = call_asgi(app, scope_for("/api/predict", [(b"content-type", b"image/png")]), chunks=1024)
    assert status == 413
    assert answer["error"] == "picture: too large (limit 8 MiB)"
    assert taken == MAX_UPLOAD_BYTES // (64 * 1024) + 1


def test_a_declared_length_above_the_limit_is_refused_before_reading(app):
    headers = [(b"content-type", b"image/png"), (b"content-length", str(MAX_UPLOAD_BYTES * 4).encode())]
    status, answer, taken = call_asgi(app, scope_for("/api/predict", headers), chunks=512)
    assert (status, taken) == (413, 0)
    assert answer["error"] == "picture: 32 MiB is too large (limit 8 MiB)"


def test_a_bad_content_length_is_a_400(app):
    status, answer, _ = call_asgi(app, scope_for("/api/predict", [(b"content-length", b"-5")]), chunks=1)
    assert status == 400 and "Content-Length" in answer["error"]


def test_a_smaller_limit_can_be_set(model, model_path):
    from starlette.testclient import TestClient

    with TestClient(create_app(model, model_path, max_upload_bytes=1000)) as small:
        response = small.post("/api/predict", content=b"\0" * 1001)
    assert response.status_code == 413
    assert response.json()["error"] == "picture: 1001 bytes is too large (limit 1000 bytes)"


# --- methods, unknown paths, the model ------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/api/predict", "POST"), ("PUT", "/api/predict", "POST"), ("DELETE", "/api/predict", "POST"),
    ("POST", "/api/model", "GET, HEAD"), ("POST", "/", "GET, HEAD"),
])
def test_a_wrong_method_is_a_json_405_saying_which_are_allowed(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
    assert set(response.headers["allow"].split(", ")) == set(allowed.split(", "))      # in any order


def test_an_unknown_path_is_a_json_404(client):
    for path in ("/nothing", "/api/nothing", "/static/nothing.js"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "Not Found"}


def test_api_model_is_what_info_json_prints(client, model_path):
    printed = json.loads(run("info", model_path, "--json").output)
    answer = client.get("/api/model").json()
    assert answer == printed
    assert "state" not in answer
    assert answer["architecture"]["hidden_size"] == 32 and answer["dataset"] == "mnist"
    assert 0.5 < answer["test_accuracy"] <= 1


# --- the page and its files -----------------------------------------------------------------------------

def test_the_page_has_every_part_the_browser_test_uses(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for test_id in ("canvas", "clear", "file-input", "drop-zone", "prediction", "probabilities",
                    "network-input", "hidden-units", "model-info", "model", "train-start", "train-stop",
                    "train-status", "train-loss-chart", "train-history", "train-tiles", "train-digits"):
        assert f'data-testid="{test_id}"' in response.text


def test_static_files_are_served_with_their_types(client):
    scripts = [(path.name, "javascript") for path in sorted(STATIC.glob("*.js"))]
    assert len(scripts) >= 5
    for name, kind in (*scripts, ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        assert response.content == (STATIC / name).read_bytes()


def test_the_page_works_offline_and_runs_no_inline_code():
    html = (STATIC / "index.html").read_text()
    js = "\n".join(path.read_text() for path in sorted(STATIC.glob("*.js")))
    css = (STATIC / "style.css").read_text()
    for text in (html, js, css):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), "a reference to another host"
        assert "@import" not in text and "url(" not in text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    loaded = {re.search(r'src="/static/([^"]+)"', attrs).group(1) for attrs, _ in scripts}
    assert loaded == {path.name for path in STATIC.glob("*.js")}       # every script, and no other
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "an inline event handler"
    assert not re.search(r"\sstyle\s*=", html, re.I) and "<style" not in html
    # Data from the server is written as text, never parsed as HTML or code.
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in js


def test_every_response_carries_the_security_headers(client, digit_pictures):
    responses = [client.get("/"), client.get("/static/app.js"), client.get("/api/model"),
                 client.post("/api/predict", content=digit_pictures[0][1]),
                 client.post("/api/predict", content=b"junk"),
                 client.post("/api/predict", content=b"\0" * (MAX_UPLOAD_BYTES + 1)),
                 client.get("/api/predict"), client.get("/nothing")]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 400, 413, 405, 404]
    for response in responses:
        for header, value in SECURITY_HEADERS.items():
            assert response.headers[header] == value
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "img-src 'self' data: blob:" in csp and "unsafe" not in csp


def test_a_server_error_is_json_with_the_headers(model, model_path, monkeypatch):
    from starlette.testclient import TestClient

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("mlknobs.serve.app.picture_report", broken)
    with TestClient(create_app(model, model_path), raise_server_exceptions=False) as failing:
        response = failing.post("/api/predict", content=b"anything")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError); see the server's log"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def dds_with_unimplemented_pixel_format() -> bytes:
    """A DDS file whose pixel format Pillow does not implement: its decoder raises NotImplementedError."""
    head = struct.pack("<4sI", b"DDS ", 124) + struct.pack("<IIIIII", 0x1007, 4, 4, 0, 0, 0) + b"\0" * 44
    pixel_format = struct.pack("<II4sIIIII", 32, 0x4, b"XYZW", 0, 0, 0, 0, 0)
    return head + pixel_format + struct.pack("<IIIII", 0x1000, 0, 0, 0, 0) + b"\0" * 64


def test_a_picture_whose_decoder_raises_anything_is_a_400(client):
    """A decoder may raise anything, not only OSError (Pillow's DDS plugin: NotImplementedError)."""
    response = client.post("/api/predict", content=dds_with_unimplemented_pixel_format())
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{PICTURE_NAME}: ")


@pytest.mark.parametrize("error", [ImageError("picture: holds no digit"), ImageTypedError("picture: odd")])
def test_any_typed_picture_error_is_a_400_with_its_message(model, model_path, monkeypatch, error):
    from starlette.testclient import TestClient

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr("mlknobs.serve.app.picture_report", refuse)
    with TestClient(create_app(model, model_path)) as refusing:
        response = refusing.post("/api/predict", content=b"anything")
    assert response.status_code == 400 and response.json() == {"error": str(error)}


@pytest.mark.parametrize("error", [NotImplementedError("decoder /home/user/secret"), KeyError("k"),
                                   MemoryError(), RecursionError("deep")])
def test_an_unexpected_error_is_a_500_naming_only_its_type(model, model_path, monkeypatch, error):
    """Nothing of the traceback or the error's text (paths, data) reaches the client."""
    from starlette.testclient import TestClient

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("mlknobs.serve.app.picture_report", broken)
    with TestClient(create_app(model, model_path), raise_server_exceptions=False) as failing:
        response = failing.post("/api/predict", content=b"anything")
    assert response.status_code == 500
    assert response.json() == {"error": f"internal error ({type(error).__name__}); see the server's log"}
    assert "secret" not in response.text and "Traceback" not in response.text


# --- hosts -------------------------------------------------------------------------------------------

def test_a_loopback_server_refuses_other_host_names(model, model_path):
    """A page elsewhere that rebinds its own name to 127.0.0.1 cannot use the API."""
    from starlette.testclient import TestClient

    guarded = TestClient(create_app(model, model_path, allowed_hosts=server.LOOPBACK_NAMES))
    for host in ("127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"):
        assert guarded.get("/api/model", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
        response = guarded.get("/api/model", headers={"Host": host})
        assert response.status_code == 400, host
        assert "Host" in response.json()["error"]
        assert response.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]


# --- a real server: traversal, a declared oversize body, 50 requests at once ----------------------------

@pytest.fixture(scope="module")
def live_url(app):
    with uvicorn_thread(app) as url:
        yield url


def raw_request(url: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
    """One request with the path sent exactly as given (http.client does not normalise it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    "/static/../app.py", "/static/../../serve/app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
    "/static/%2e%2e%2fapp.py", "/static/..%5capp.py", "/static/%2e%2e%2f%2e%2e%2fcli%2fserve.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/....//app.py", "/static/.%2e/report.py",
])
def test_static_files_cannot_escape_their_folder(live_url, path):
    status, body = raw_request(live_url, "GET", path)
    assert status in (400, 404), (path, status)
    assert b"create_app" not in body and b"root:" not in body and b"def " not in body


def test_a_real_server_refuses_a_declared_oversize_body_without_waiting_for_it(live_url):
    parts = urlsplit(live_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("POST", "/api/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(100 * 2**20))
        connection.endheaders()                       # and not a byte of the 100 MiB
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == "picture: 100 MiB is too large (limit 8 MiB)"
    finally:
        connection.close()


def test_fifty_requests_at_once_all_get_their_answer(live_url, synthetic_splits):
    _, test = synthetic_splits
    rng = np.random.default_rng(3)
    good = [png_of(test.images[i], rng) for i in range(40)]
    bodies = good + [b"", b"not a picture", pictures.png_header_only(100_000, 100_000)] * 3 + [good[0]]
    assert len(bodies) == 50
    expected = [raw_request(live_url, "POST", "/api/predict", body) for body in bodies]   # one at a time
    start = threading.Barrier(len(bodies))

    def send(body: bytes) -> tuple[int, bytes]:
        start.wait()
        return raw_request(live_url, "POST", "/api/predict", body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    assert [status for status, _ in answers] == [200] * 40 + [400] * 9 + [200]
    assert [json.loads(body) for _, body in answers] == [json.loads(body) for _, body in expected]
    assert raw_request(live_url, "GET", "/api/model")[0] == 200
