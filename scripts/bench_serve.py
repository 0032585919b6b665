"""How fast does `mlknobs serve` answer a drawing? Time POST /api/predict against a real server.

Starts `mlknobs serve --port 0` as its own process (as a user would), then sends the same 280x280
PNG the page's canvas sends (a dark digit drawn on white) over one keep-alive connection, one
request at a time, as the page does while you draw. Each time is the whole round trip seen by the
client: upload, decode, MNIST-style preprocessing, the network, the hidden units' report, JSON.
The target is a median and a 95th percentile under 50 ms.

    python scripts/bench_serve.py                          # a synthetic-digit model, H=512
    python scripts/bench_serve.py --model model.npz --requests 500
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # shared machines: one BLAS thread is fastest

import numpy as np
from PIL import Image

from mlknobs.config import TrainConfig
from mlknobs.data.splits import Split
from mlknobs.data.synthetic import make_digits
from mlknobs.io.modelfile import load_model, save_model
from mlknobs.training.loop import fit

TARGET_MS = 50.0
CANVAS = 280        # the page's canvas, in pixels


def synthetic_model(folder: Path, hidden_size: int) -> Path:
    """A model trained for one epoch on synthetic digits: its speed is that of any model of size H."""
    rng = np.random.default_rng(0)
    train, test = (Split(*make_digits(n, rng)) for n in (10_000, 2_000))
    print(f"training a synthetic-digit model (H={hidden_size}, 1 epoch) ...", file=sys.stderr)
    model = fit(TrainConfig(hidden_size=hidden_size, epochs=1, seed=0), train, test, [str(d) for d in range(10)])
    path = folder / f"synthetic-h{hidden_size}.npz"
    save_model(path, model)
    return path


def canvas_png(seed: int = 1) -> bytes:
    """A digit as the page sends it: dark ink on a white 280x280 canvas, PNG."""
    digit = make_digits(10, np.random.default_rng(seed))[0][7].reshape(28, 28)
    ink = Image.fromarray(digit).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)
    paper = 255 - np.asarray(ink, np.uint8)                                  # dark on white
    out = io.BytesIO()
    Image.fromarray(paper).convert("RGBA").save(out, "PNG")                  # a canvas PNG is RGBA
    return out.getvalue()


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "mlknobs", "serve", "--model", str(model), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise SystemExit(f"mlknobs serve did not start: {line!r}")
    return process, line[line.index("http://"):].split()[0]


def time_requests(url: str, body: bytes, count: int, warmup: int) -> tuple[list[float], int]:
    """Round-trip times in ms of `count` requests (after `warmup` untimed), and the answer's size."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "image/png"}
    times, size = [], 0
    try:
        for i in range(warmup + count):
            start = time.perf_counter()
            connection.request("POST", "/api/predict", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = (time.perf_counter() - start) * 1000
            if response.status != 200:
                raise SystemExit(f"request {i}: {response.status} {answer[:200]!r}")
            if i >= warmup:
                times.append(elapsed)
            size = len(answer)
    finally:
        connection.close()
    json.loads(answer)
    return times, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model file (default: train a synthetic-digit one)")
    parser.add_argument("--hidden-size", type=int, default=TrainConfig().hidden_size,
                        help="hidden units of the synthetic model (default: train's default)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        model_path = args.model or synthetic_model(Path(folder), args.hidden_size)
        hidden = load_model(model_path).params.hidden_size
        body = canvas_png()
        process, url = start_server(model_path)
        try:
            times, answer_bytes = time_requests(url, body, args.requests, args.warmup)
        finally:
            process.terminate()
            process.wait(30)

    ordered = sorted(times)
    figures = {"requests": len(times), "hidden_size": hidden, "picture_bytes": len(body),
               "answer_bytes": answer_bytes, "median_ms": statistics.median(ordered),
               "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
               "min_ms": ordered[0], "max_ms": ordered[-1], "target_ms": TARGET_MS}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"POST /api/predict, {CANVAS}x{CANVAS} PNG ({len(body):,} bytes), H={hidden}, "
              f"{len(times)} requests one at a time over one connection:")
        print(f"  median {figures['median_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, "
              f"min {figures['min_ms']:.1f} ms, max {figures['max_ms']:.1f} ms; answer {answer_bytes:,} bytes")
        verdict = "within" if figures["p95_ms"] < TARGET_MS else "ABOVE"
        print(f"  p95 {verdict} the {TARGET_MS:.0f} ms target")
    return 0 if figures["p95_ms"] < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
