"""Does watching slow training down? `mlknobs train` against the same run started from the page.

Runs, alternately and `--repeats` times each:
  cli    mlknobs train --json --quiet (the seconds it reports: the epochs' training time)
  page   mlknobs serve, with the page open in Chromium (Playwright, /usr/bin/chromium): the
         settings typed into the panel, Start pressed, the page following every event (loss chart,
         tiles, digits) until `done`; the same seconds, from GET /api/train
         (--watcher sse: a plain event-stream reader instead of the browser)
and prints the median of each and their ratio. The target: the page within 10 % of the CLI.
Data from the local mirror (MLKNOBS_MIRROR, or --mirror); one BLAS thread, as the CLI's default.

    MLKNOBS_MIRROR=../shared/data python scripts/bench_serve_train.py
    python scripts/bench_serve_train.py --hidden-size 512 --epochs 2 --repeats 3 --watcher sse
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from machine import cpu_name

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
CHROMIUM = Path("/usr/bin/chromium")


def cli_seconds(args, data_dir: Path, out: Path) -> float:
    command = [sys.executable, "-m", "mlknobs", "train", "--hidden-size", str(args.hidden_size),
               "--epochs", str(args.epochs), "--data-dir", str(data_dir), "--out", str(out), "--fresh",
               "--json", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["seconds"]


def get_state(url: str) -> dict:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", "/api/train")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def follow_events(url: str, settings: dict) -> None:
    """Start a run through the API and read its event stream to the end, as the page does."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    connection.request("POST", "/api/train", body=json.dumps(settings), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 202, response.read()
    response.read()
    connection.request("GET", "/api/train/events")
    for line in connection.getresponse():
        if line.startswith(b"data: ") and b'"event":"end"' in line:
            break
    connection.close()


def page_seconds(args, data_dir: Path, out_dir: Path, model: Path, browser) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "mlknobs", "serve", "--model", str(model), "--port", "0",
                               "--data-dir", str(data_dir), "--out-dir", str(out_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        url = server.stdout.readline().split()[2]
        if browser is None:
            follow_events(url, {"hidden_size": args.hidden_size, "epochs": args.epochs})
        else:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.get_by_test_id("train-hidden-size").fill(str(args.hidden_size))
            page.get_by_test_id("train-epochs").fill(str(args.epochs))
            page.locator("#train-panel").scroll_into_view_if_needed()     # the chart and tiles on screen
            page.get_by_test_id("train-start").click()
            page.wait_for_function("() => /^(done|failed|stopped)/.test("
                                   "document.querySelector('[data-testid=train-status]').textContent)",
                                   timeout=3_600_000)
            page.close()
        state = get_state(url)
        assert state["status"] == "done", state
        return sum(entry["seconds"] for entry in state["history"])
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watcher", choices=("page", "sse"), default="page")
    parser.add_argument("--mirror", default=os.environ.get("MLKNOBS_MIRROR"))
    args = parser.parse_args()
    if args.mirror:
        os.environ["MLKNOBS_MIRROR"] = args.mirror

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data_dir = folder / "data"
        model = folder / "start.npz"
        subprocess.run([sys.executable, "-m", "mlknobs", "train", "--hidden-size", "16", "--epochs", "1",
                        "--data-dir", str(data_dir), "--out", str(model), "--quiet"], check=True)  # data cached
        playwright = browser = None
        if args.watcher == "page":
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=["--headless", "--no-sandbox", "--disable-gpu"])
        cli, page = [], []
        load_before = os.getloadavg()
        try:
            for k in range(args.repeats):
                cli.append(cli_seconds(args, data_dir, folder / "cli.npz"))
                runs = folder / f"page{k}"
                runs.mkdir()
                page.append(page_seconds(args, data_dir, runs, model, browser))
                print(f"  repeat {k + 1}: cli {cli[-1]:.2f} s, page {page[-1]:.2f} s", file=sys.stderr)
        finally:
            if browser is not None:
                browser.close()
                playwright.stop()
        load_after = os.getloadavg()

    ratio = statistics.median(page) / statistics.median(cli)
    print(f"H={args.hidden_size}, {args.epochs} epoch(s) of MNIST, {args.repeats} repeats, watcher: {args.watcher}")
    print(f"cli  median {statistics.median(cli):.2f} s  ({', '.join(f'{s:.2f}' for s in cli)})")
    print(f"page median {statistics.median(page):.2f} s  ({', '.join(f'{s:.2f}' for s in page)})")
    print(f"page / cli = {ratio:.3f}  (target: at most 1.10)")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after (above ~1 means others were using the machine)")


if __name__ == "__main__":
    main()
