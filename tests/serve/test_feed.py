"""The fan-out of a run's records to event-stream readers (mlknobs.serve.feed): order, bounded
backlogs that turn into one snapshot, a cap on readers, closing."""

from __future__ import annotations

import json

import pytest

from mlknobs.serve.feed import Feed, TooManyReaders, sse


def events(data: bytes) -> list[tuple[int | None, dict]]:
    out = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((int(lines["id"]) if "id" in lines else None, json.loads(lines["data"])))
    return out


class Counter:
    """A run's state: how many records were published."""

    def __init__(self):
        self.count = 0

    def snapshot(self) -> dict:
        return {"count": self.count}


def publish(feed: Feed, state: Counter, n: int) -> None:
    for _ in range(n):
        with feed.lock:
            state.count += 1
            feed.publish({"event": "step", "step": state.count})


def test_a_reader_starts_with_the_state_then_gets_every_record_in_order():
    state = Counter()
    feed = Feed(state.snapshot)
    publish(feed, state, 3)
    reader = feed.subscribe()
    publish(feed, state, 4)
    got = events(reader.take())
    assert got[0] == (None, {"event": "state", "count": 3})
    assert got[1:] == [(seq, {"event": "step", "step": seq}) for seq in range(4, 8)]
    assert reader.take() == b""


def test_a_reader_that_falls_behind_gets_one_snapshot_instead_of_a_growing_backlog():
    state = Counter()
    feed = Feed(state.snapshot, max_backlog=2000)
    reader = feed.subscribe()
    reader.take()
    publish(feed, state, 10_000)                       # ~40 bytes each: 400 KB if nothing were dropped
    assert reader.size <= 2000 and reader.lagging
    assert events(reader.take()) == [(None, {"event": "state", "count": 10_000})]
    publish(feed, state, 2)
    assert [seq for seq, _ in events(reader.take())] == [10_001, 10_002]     # and goes on from there


def test_readers_are_capped_and_leaving_frees_a_place():
    feed = Feed(Counter().snapshot, max_readers=2)
    first, _ = feed.subscribe(), feed.subscribe()
    with pytest.raises(TooManyReaders):
        feed.subscribe()
    first.leave()
    feed.subscribe()


def test_after_close_readers_finish_their_backlog_then_end_and_late_ones_get_the_state():
    state = Counter()
    feed = Feed(state.snapshot)
    reader = feed.subscribe()
    publish(feed, state, 2)
    feed.close()
    assert len(events(reader.take())) == 3
    assert reader.take() is None
    late = feed.subscribe()
    assert events(late.take()) == [(None, {"event": "state", "count": 2})]
    assert late.take() is None


def test_an_event_is_one_data_line_of_json():
    assert sse({"event": "step", "text": "two\nlines"}, 7) == b'id: 7\ndata: {"event":"step","text":"two\\nlines"}\n\n'
    with pytest.raises(ValueError):
        sse({"loss": float("nan")})
