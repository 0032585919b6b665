"""Records from the training thread to any number of event-stream readers, none of which can slow it.

The training thread publishes a record (a dict) after every step; it is encoded once, as the
Server-Sent Events text `id: N` / `data: {json}`, and appended to each reader's backlog: a few
microseconds, whoever reads. A reader (one per open /api/train/events stream) takes its backlog
when it wakes. One that falls behind by more than `max_backlog` bytes (a stalled tab, a slow
link) loses its backlog instead of growing it, and its next take() is a fresh snapshot of the
whole state so far, merged into one record: it catches up at once, with the loss curve at the
resolution the snapshot keeps. A reader that connects late starts with such a snapshot too.

Readers poll (take() never blocks): the training thread never touches the event loop.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable

MAX_BACKLOG_BYTES = 1 << 20        # per reader: ~5,000 step records
MAX_READERS = 16                   # open event streams per server; more are refused (503)


def sse(record: dict, seq: int | None = None) -> bytes:
    """One Server-Sent Event: `id: seq` (if given) and the record as one `data:` line of JSON."""
    text = json.dumps(record, separators=(",", ":"), allow_nan=False)   # NaN is not JSON: records hold none
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}data: {text}\n\n".encode()


class TooManyReaders(Exception):
    """MAX_READERS streams are open already."""


class Feed:
    """The fan-out of one run's records (see the module note). `snapshot()` is called under the
    feed's lock, so a snapshot and the records after it never overlap or leave a gap."""

    def __init__(self, snapshot: Callable[[], dict], max_backlog: int = MAX_BACKLOG_BYTES,
                 max_readers: int = MAX_READERS):
        self.lock = threading.Lock()      # also guards whatever snapshot() reads (the run's state)
        self.snapshot = snapshot
        self.max_backlog, self.max_readers = max_backlog, max_readers
        self.readers: set[Reader] = set()
        self.seq = 0                      # id of the last record published
        self.closed = False

    def publish(self, record: dict) -> None:
        """Send `record` to every reader (call with self.lock held, after updating the state)."""
        self.seq += 1
        data = sse(record, self.seq)
        for reader in self.readers:
            reader.put(data)

    def subscribe(self) -> Reader:
        """A new reader whose first record is the state so far. Raises TooManyReaders."""
        with self.lock:
            if len(self.readers) >= self.max_readers:
                raise TooManyReaders
            reader = Reader(self)
            reader.put(sse({"event": "state", **self.snapshot()}))
            if not self.closed:
                self.readers.add(reader)
            else:
                reader.closed = True
            return reader

    def close(self) -> None:
        """No more records: each reader ends once it has taken its backlog."""
        with self.lock:
            self.closed = True
            for reader in self.readers:
                reader.closed = True
            self.readers.clear()


class Reader:
    """One stream's backlog of encoded records (see Feed)."""

    def __init__(self, feed: Feed):
        self.feed = feed
        self.backlog: deque[bytes] = deque()
        self.size = 0
        self.lagging = False
        self.closed = False

    def put(self, data: bytes) -> None:
        if self.lagging:
            return
        if self.size + len(data) > self.feed.max_backlog:
            self.backlog.clear()          # the next take() sends a snapshot instead
            self.size, self.lagging = 0, True
            return
        self.backlog.append(data)
        self.size += len(data)

    def take(self) -> bytes | None:
        """The records waiting (b"" if none); None once the feed is closed and all is taken."""
        with self.feed.lock:
            if self.lagging:
                self.lagging = False
                self.backlog.clear()
                self.size = 0
                return sse({"event": "state", **self.feed.snapshot()})
            data = b"".join(self.backlog)
            self.backlog.clear()
            self.size = 0
            if not data and self.closed:
                return None
            return data

    def leave(self) -> None:
        """The stream ended (the client went away): stop collecting records for it."""
        with self.feed.lock:
            self.feed.readers.discard(self)
