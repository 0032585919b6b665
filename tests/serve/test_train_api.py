"""The training panel's API (mlknobs.serve.train_api, trainer): runs on the synthetic digits through
Starlette's TestClient, and the event stream through a real uvicorn on a loopback port."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
from dataclasses import fields
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the test extra)")

import pictures
from mlknobs.cli.serve import setting_flags
from mlknobs.config import AUGMENT_DEFAULTS, LOSS_NAMES, TrainConfig
from mlknobs.io.modelfile import load_model
from mlknobs.serve.app import create_app
from mlknobs.serve.settings import SERVER_LIMITS
from mlknobs.serve.train_api import MAX_SETTINGS_BYTES, TrainingPanel
from mlknobs.training.run import DataSource
from mlknobs.vision.classify import classify
from mlknobs.vision.images import read_input
from serving import uvicorn_thread

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

JSON = {"Content-Type": "application/json"}
SMALL = {"hidden_size": 16, "epochs": 1}
LONG = {"hidden_size": 16, "epochs": 200, "batch_size": 32}      # ~60 s: always stopped first
WAIT_SECONDS = 60


@pytest.fixture
def app(synthetic_model_path, synthetic_data_dir, tmp_path):
    panel = TrainingPanel(tmp_path / "runs", DataSource(synthetic_data_dir), setting_flags())
    (tmp_path / "runs").mkdir()
    return create_app(load_model(synthetic_model_path), synthetic_model_path, training=panel)


@pytest.fixture
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def wait_for(client, predicate, seconds: float = WAIT_SECONDS) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        state = client.get("/api/train").json()
        if predicate(state):
            return state
        assert time.monotonic() < deadline, f"gave up waiting; the run is {state.get('status')}"
        time.sleep(0.05)


def ended(state: dict) -> bool:
    return state["status"] in ("done", "stopped", "failed")


def start(client, settings: dict, headers: dict = JSON):
    return client.post("/api/train", content=json.dumps(settings), headers=headers)


# --- settings ----------------------------------------------------------------------------------------

def test_the_settings_are_the_configs_with_their_flags_and_the_servers_limits(client):
    described = client.get("/api/train/settings").json()
    by_name = {entry["name"]: entry for entry in described["settings"]}
    assert set(by_name) == {f.name for f in fields(TrainConfig)}
    hidden = by_name["hidden_size"]
    assert (hidden["flag"], hidden["default"], hidden["min"], hidden["max"]) == \
        ("--hidden-size", TrainConfig().hidden_size, 1, SERVER_LIMITS["hidden_size"])
    assert hidden["limits"] == "a whole number from 1 to 4,096" and hidden["help"]
    rate = by_name["learning_rate"]
    assert (rate["flag"], rate["kind"], rate["min"], rate["min_open"], rate["max"]) == ("--lr", "number", 0, True, None)
    assert by_name["loss"]["choices"] == list(LOSS_NAMES) and by_name["nesterov"]["kind"] == "boolean"
    assert described["augment"]["sets"] == AUGMENT_DEFAULTS and described["augment"]["flag"] == "--augment"
    primary = [entry["name"] for entry in described["settings"] if entry["primary"]]
    assert primary[:3] == ["hidden_size", "learning_rate", "epochs"]


# --- a run --------------------------------------------------------------------------------------------

def test_before_any_run_the_state_is_idle(client):
    assert client.get("/api/train").json() == {"run": None, "status": "idle"}
    assert client.post("/api/train/stop", content="{}", headers=JSON).status_code == 409


def test_a_run_is_202_ends_done_and_its_model_is_drawn_with_at_once(client, app, tmp_path, synthetic_splits):
    response = start(client, SMALL)
    assert response.status_code == 202
    run_id = response.json()["run"]
    assert response.json()["model"] == str(tmp_path / "runs" / f"{run_id}.npz")
    state = wait_for(client, ended)
    assert state["status"] == "done", state["message"]
    saved = tmp_path / "runs" / f"{run_id}.npz"
    assert state["model"] == str(saved) and saved.is_file()
    assert not (tmp_path / "runs" / f"{run_id}.ckpt.npz").exists()
    model = load_model(saved)
    assert model.config.hidden_size == 16 and state["test_accuracy"] == pytest.approx(model.results["test_accuracy"])
    assert [entry["epoch"] for entry in state["history"]] == [1]
    assert len(state["curve"]["steps"]) == state["steps"] == state["batches"] == 79     # 10,000 / 128

    info = client.get("/api/model").json()
    assert info["model"] == str(saved) and info["architecture"]["hidden_size"] == 16
    _, test = synthetic_splits
    picture = pictures.dark_on_light_png(test.images[0], np.random.default_rng(0))
    answer = client.post("/api/predict", content=picture).json()
    assert answer["label"] == classify(model, read_input(picture, model.dataset))["label"]
    assert len(answer["hidden"][0]["weights"]) == 28


def test_one_run_at_a_time_and_stop_keeps_the_checkpoint(client, tmp_path, synthetic_data_dir):
    run_id = start(client, LONG).json()["run"]
    wait_for(client, lambda s: len(s["history"]) >= 1 or ended(s))
    second = start(client, SMALL)
    assert second.status_code == 409
    assert second.json() == {"error": f"run {run_id} is still going: stop it first (POST /api/train/stop)",
                             "run": run_id}
    stopping = client.post("/api/train/stop", content="{}", headers=JSON)
    assert stopping.status_code == 202 and stopping.json() == {"run": run_id, "status": "stopping"}
    state = wait_for(client, ended, seconds=10)
    out = tmp_path / "runs" / f"{run_id}.npz"
    checkpoint = tmp_path / "runs" / f"{run_id}.ckpt.npz"
    assert state["status"] == "stopped"
    epochs = len(state["history"])
    assert state["message"] == f"epoch {epochs} of 200 is saved in {checkpoint}"
    assert state["resume"] == f"mlknobs train --resume --out {out} --data-dir {synthetic_data_dir}"
    assert checkpoint.is_file() and not out.exists()
    assert start(client, SMALL).status_code == 202      # the next run may start
    wait_for(client, ended)


def test_a_diverging_run_fails_with_the_librarys_message_and_keeps_its_curve(client):
    start(client, {**SMALL, "learning_rate": 1000.0})
    state = wait_for(client, ended)
    assert state["status"] == "failed"
    assert state["message"].startswith(("training diverged", "training collapsed"))
    assert "learning rate 1000" in state["message"] and "lr-find" in state["hint"]
    assert state["curve"]["steps"] and state["model"] is None


def test_shutting_the_server_down_stops_a_run_and_keeps_its_checkpoint(app, synthetic_model_path, tmp_path):
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        run_id = start(client, LONG).json()["run"]
        wait_for(client, lambda s: len(s["history"]) >= 1)
    state = app.state.trainer.state()                   # the lifespan's end waited for the run to stop
    assert state["status"] == "stopped" and state["stopping"]
    assert (tmp_path / "runs" / f"{run_id}.ckpt.npz").is_file()


# --- refusals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "setting", "words"), [
    ({"hidden_size": 0}, "hidden_size", "must be a whole number from 1 to"),
    ({"hidden_size": 5000}, "hidden_size", "from 1 to 4,096 here (the most this server trains (it bounds memory)"),
    ({"batch_size": 2048}, "batch_size", "from 1 to 1,024 here"),
    ({"epochs": 1001}, "epochs", "from 1 to 1,000 here"),
    ({"threads": 99}, "threads", "the cores this server may use"),
    ({"hidden_size": 32.5}, "hidden_size", "must be a whole number"),
    ({"hidden_size": True}, "hidden_size", "must be a whole number"),
    ({"learning_rate": -1}, "learning_rate", "must be a positive number"),
    ({"learning_rate": "fast"}, "learning_rate", "must be a positive number"),
    ({"learning_rate": None}, "learning_rate", "must be a positive number"),
    ({"momentum": 1}, "momentum", "must be a number from 0 to below 1"),
    ({"loss": "hinge"}, "loss", "must be one of cross-entropy, mse"),
    ({"nesterov": "yes"}, "nesterov", "must be true or false"),
    ({"augment": 1}, "augment", "must be true or false"),
    ({"bogus": 1}, "bogus", "unknown setting: bogus"),
    ({"early_stopping": 3}, "early_stopping", "needs a validation set"),
])
def test_a_bad_setting_is_a_400_naming_it(client, body, setting, words):
    response = start(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["settings"] == [setting]
    assert setting in response.json()["error"] and words in response.json()["error"]
    assert client.get("/api/train").json()["status"] == "idle"


@pytest.mark.parametrize(("content", "words"), [
    ("[1, 2]", "must be a JSON object"), ('"hidden_size"', "must be a JSON object"), ("3", "must be a JSON object"),
    ("{hidden_size: 3}", "the body is not valid JSON"), ("", "the body is not valid JSON"),
    ('{"learning_rate": NaN}', "the body is not valid JSON (NaN is not a JSON number)"),
    ('{"hidden_size": 1e999}', "the body is not valid JSON (1e999 is out of a number's range)"),
    ("[" * 5000 + "]" * 5000, "the body is nested deeper than 4 levels"),
    ('{"hidden_size": ' + "9" * 5000 + "}", "the body is not valid JSON"),
    ('{"loss": "\\udc80"}', "the body is not valid Unicode at ['loss']"),
    (b'{"loss": "\xff"}', "the body is not UTF-8"),
])
def test_a_body_that_is_not_an_object_of_settings_is_a_400(client, content, words):
    response = client.post("/api/train", content=content, headers=JSON)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_a_body_past_the_limit_is_a_413(client):
    response = client.post("/api/train", content=b" " * (MAX_SETTINGS_BYTES + 1), headers=JSON)
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/api/train", "/api/train/stop"])
@pytest.mark.parametrize(("headers", "status"), [
    ({"Content-Type": "text/plain"}, 415),                           # what a form on any site can send
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ({}, 415),
    ({**JSON, "Origin": "http://evil.example"}, 403),
    ({**JSON, "Origin": "null"}, 403),
    ({**JSON, "Origin": "http://127.0.0.1:9999"}, 403),              # another port is another site
    ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
    ({**JSON, "Sec-Fetch-Site": "same-site"}, 403),
    ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
])
def test_training_requests_only_from_this_servers_own_page(client, path, headers, status):
    response = client.post(path, content=json.dumps(SMALL), headers=headers)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert client.get("/api/train").json()["status"] == "idle"


def test_this_servers_own_page_may_start_a_run(client):
    headers = {**JSON, "Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert start(client, SMALL, headers).status_code == 202
    wait_for(client, ended)


def test_the_training_api_is_absent_without_a_panel(synthetic_model_path):
    from starlette.testclient import TestClient

    with TestClient(create_app(load_model(synthetic_model_path), synthetic_model_path)) as plain:
        assert plain.get("/api/train/settings").status_code == 404
        assert plain.post("/api/train", content="{}", headers=JSON).status_code == 404


# --- the event stream, through a real server -----------------------------------------------------------

@pytest.fixture
def live_url(app):
    with uvicorn_thread(app) as url:
        yield url


def post(url: str, path: str, body: dict) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", path, body=json.dumps(body), headers=JSON)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def read_events(url: str, limit: int | None = None, timeout: float = WAIT_SECONDS) -> list[tuple[int | None, dict]]:
    """(id, record) of each event of /api/train/events, until the stream ends (or `limit` events)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    events = []
    try:
        connection.request("GET", "/api/train/events")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
        event_id, data = None, None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and data is not None:
                events.append((event_id, data))
                event_id, data = None, None
                if limit is not None and len(events) >= limit:
                    break
    finally:
        connection.close()
    return events


def test_events_come_in_order_and_complete(live_url):
    status, started = post(live_url, "/api/train", {**SMALL, "epochs": 2, "val_size": 1000})
    assert status == 202
    events = read_events(live_url)
    (first_id, state), rest = events[0], events[1:]
    assert first_id is None and state["event"] == "state" and state["run"] == started["run"]
    ids = [event_id for event_id, _ in rest]
    assert ids == list(range(ids[0], ids[0] + len(ids)))               # nothing lost, nothing twice
    records = [record for _, record in rest]
    assert records[-1]["event"] == "end" and records[-1]["status"] == "done"

    batches = 71                                                         # 9,000 / 128
    steps = state["curve"]["steps"] + [r["step"] for r in records if r["event"] == "step"]
    assert steps == list(range(1, 2 * batches + 1))                      # every step once, in order
    epochs = state["history"] + [r for r in records if r["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all("val_accuracy" in e for e in epochs)
    order = [r["event"] for r in records if r["event"] != "snapshot"]
    if "start" in order:
        assert order.index("start") == 0
    epoch_at = [i for i, event in enumerate(order) if event == "epoch"]
    assert [order[i - 1] for i in epoch_at] == ["step", "step"]            # an epoch ends after its last step
    step_records = [r for r in records if r["event"] == "step"]
    assert all(np.isfinite(r["loss"]) and r["learning_rate"] > 0 for r in step_records)
    assert any(r["steps_per_second"] for r in step_records)

    snapshots = [r for r in records if r["event"] == "snapshot"]
    assert snapshots and all(r["units"] == 16 and len(base64.b64decode(r["tiles"])) == 16 * 784 for r in snapshots)
    digits = [r["digits"] for r in snapshots if "digits" in r]
    assert digits and all(len(d["labels"]) == len(d["guesses"]) == 8 for d in digits)
    assert all(len(base64.b64decode(d["pixels"])) == 8 * 784 for d in digits)


def test_a_client_that_connects_late_gets_the_state_so_far(live_url):
    post(live_url, "/api/train", SMALL)
    read_events(live_url)                                                # until the end
    events = read_events(live_url)
    assert len(events) == 1
    state = events[0][1]
    assert state["event"] == "state" and state["status"] == "done"
    assert state["curve"]["steps"] == list(range(1, 80)) and len(state["history"]) == 1
    assert state["snapshot"]["units"] == 16 and state["model"].endswith(".npz")


def test_a_client_disconnecting_mid_stream_leaves_the_run_and_other_clients_alone(live_url, app):
    post(live_url, "/api/train", LONG)
    trainer = app.state.trainer
    assert len(read_events(live_url, limit=5)) == 5                      # then this client goes away
    parts = urlsplit(live_url)
    stalled = socket.create_connection((parts.hostname, parts.port))    # and this one never reads
    stalled.sendall(b"GET /api/train/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    deadline = time.monotonic() + 10
    while len(trainer.run.feed.readers) != 1:                           # only the stalled one is left
        assert time.monotonic() < deadline, len(trainer.run.feed.readers)
        time.sleep(0.05)
    steps = [r["step"] for _, r in read_events(live_url, limit=50) if r["event"] == "step"]
    assert steps == list(range(steps[0], steps[0] + len(steps)))
    before = trainer.state()["progress"]["step"]
    time.sleep(1)
    state = trainer.state()
    assert state["status"] == "running" and state["progress"]["step"] > before + 100   # not held up
    stalled.close()
    assert post(live_url, "/api/train/stop", {})[0] == 202


# --- mlknobs serve, the command ----------------------------------------------------------------------

SERVE_SYNTHETIC = """
import json, sys
from mlknobs.data import datasets
spec = json.loads(sys.argv[1])
datasets.DATASETS["mnist"] = datasets.DatasetSpec(name="mnist", sha256=spec["sha256"], sizes=spec["sizes"],
                                                  class_names=tuple(spec["class_names"]), mirrors=())
from mlknobs.cli import main
sys.argv = ["mlknobs", "serve", *sys.argv[2:]]
main()
"""


def test_ctrl_c_while_a_run_trains_keeps_its_checkpoint_and_says_how_to_resume(synthetic_mnist, synthetic_model_path,
                                                                                tmp_path):
    import os
    import signal
    import subprocess
    import sys

    spec = synthetic_mnist.spec
    description = json.dumps({"sha256": spec.sha256, "sizes": spec.sizes, "class_names": list(spec.class_names)})
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SYNTHETIC, description, "--model", str(synthetic_model_path), "--port", "0",
         "--data-dir", str(synthetic_mnist.data_dir), "--out-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = process.stdout.readline().split()[2]
        status, started = post(url, "/api/train", LONG)
        assert status == 202, started
        deadline = time.monotonic() + WAIT_SECONDS
        while not any(r["event"] == "epoch" for _, r in read_events(url, limit=400)):
            assert time.monotonic() < deadline
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    out = tmp_path / f"{started['run']}.npz"
    checkpoint = tmp_path / f"{started['run']}.ckpt.npz"
    assert process.returncode == 0, err
    assert checkpoint.is_file() and not out.exists()
    lines = err.strip().splitlines()
    assert lines[-1] == "mlknobs serve: stopped" and "Traceback" not in err, err
    expected = (rf"training run {started['run']} stopped: epoch \d+ of 200 is saved in {re.escape(str(checkpoint))}; "
                rf"resume with: mlknobs train --resume --out {re.escape(str(out))} "
                rf"--data-dir {re.escape(str(synthetic_mnist.data_dir))}")
    assert re.fullmatch(expected, lines[-2]), err
