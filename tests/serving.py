"""Running the web app for tests: uvicorn in a thread of this process, or `mlknobs serve` as a process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlknobs.serve import server

START_SECONDS = 30
# Debian's Chromium, driven by Playwright (`playwright install` and its browser download are not used).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def uvicorn_thread(app, limits=None) -> Iterator[str]:
    """Serve `app` on a free loopback port as `mlknobs serve` configures uvicorn (with connection
    `limits`, default as the command's); yields the page's URL."""
    sock = server.listen("127.0.0.1", 0)
    uvicorn = server.uvicorn_server(app, limits)
    thread = threading.Thread(target=uvicorn.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not uvicorn.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield server.page_url(sock)
    finally:
        uvicorn.should_exit = True
        thread.join(START_SECONDS)
        sock.close()


@dataclass
class ServeProcess:
    process: subprocess.Popen
    url: str                  # as printed: http://127.0.0.1:PORT/
    first_line: str

    def interrupt(self, timeout: float = START_SECONDS) -> tuple[int, str, str]:
        """Ctrl-C: SIGINT, then (exit code, rest of stdout, stderr)."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@contextmanager
def serve_process(*args: str | Path) -> Iterator[ServeProcess]:
    """`python -m mlknobs serve ARGS...` (add --port 0); waits for the line with its URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mlknobs", "serve", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=START_SECONDS)
        except queue.Empty:
            line = ""
        if "http://" not in line:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"mlknobs serve printed no URL: {line!r} {out!r} {err!r}")
        url = line[line.index("http://"):].split()[0]
        yield ServeProcess(process, url, line)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
