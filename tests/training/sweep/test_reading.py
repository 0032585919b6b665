"""training/sweep/reading.py: the one bounded reader of a sweep's files (sweep.json, results.jsonl).

Every hostile file is refused by name, in bounded time and memory: a FIFO (which would block for
ever), a link to /dev/zero (endless), a folder, a file over the cap, a line over the cap, JSON
nested past the cap, NaN and Infinity. The JSON reader itself is tested in tests/files/test_jsonl.py.
"""

from __future__ import annotations

import os
import time

import pytest

from mlknobs.errors import SweepFileError
from mlknobs.training.sweep.reading import MAX_JSON_DEPTH, read_json_file, read_json_lines

LIMIT, LINE_LIMIT = 1 << 20, 1 << 10


def lines_of(path):
    return list(read_json_lines(path, LIMIT, LINE_LIMIT, kind="results file"))


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: os.symlink("/dev/zero", p), "character device"),
    (lambda p: p.mkdir(), "directory"),
])
@pytest.mark.parametrize("read", [
    lambda p: read_json_file(p, LIMIT, kind="sweep description"),
    lambda p: lines_of(p),
])
def test_anything_but_a_regular_file_is_refused_by_name_without_blocking(tmp_path, no_hang, make, words, read):
    path = tmp_path / "sweep.json"
    make(path)
    with pytest.raises(SweepFileError) as refused:
        read(path)
    assert refused.value.path == path and words in refused.value.problem
    assert str(refused.value).startswith(f"{path}: ")


def test_a_missing_file_is_none_or_no_lines(tmp_path):
    assert read_json_file(tmp_path / "sweep.json", LIMIT, kind="sweep description") is None
    assert lines_of(tmp_path / "results.jsonl") == []


def test_a_file_over_the_cap_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "results.jsonl"
    with open(path, "wb") as f:
        f.truncate(LIMIT + 1)                      # sparse: a huge file costs nothing to make
    with pytest.raises(SweepFileError, match="too large"):
        lines_of(path)


def test_a_line_over_the_cap_or_not_json_is_none_and_the_others_are_read(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"run": "a"}\n' + b'{"x": "' + b"y" * LINE_LIMIT + b'"}\n' + b"[" * 200_000 + b"\n"
                     + b'{"v": NaN}\n{"v": Infinity}\n\xff\xfe\n{"torn": \n\n{"run": "b"}\n')
    assert lines_of(path) == [{"run": "a"}, None, None, None, None, None, None, {"run": "b"}]


@pytest.mark.parametrize("text", [b"[" * 200_000, b'{"a":' * 100_000, b"[" * (MAX_JSON_DEPTH + 1) + b"]" * 20,
                                  b'{"grid": {"lr": [[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}'])
def test_json_nested_past_the_cap_is_refused_fast_naming_the_file(tmp_path, text):
    path = tmp_path / "sweep.json"
    path.write_bytes(text)
    started = time.perf_counter()
    with pytest.raises(SweepFileError, match=f"nested deeper than {MAX_JSON_DEPTH} levels") as refused:
        read_json_file(path, LIMIT, kind="sweep description")
    assert time.perf_counter() - started < 0.5 and refused.value.path == path


def test_a_line_nested_past_the_cap_is_none_and_one_at_the_cap_is_read(tmp_path):
    path = tmp_path / "results.jsonl"
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    path.write_bytes(b"[" + deepest + b"]\n" + deepest + b"\n")
    too_deep, read = lines_of(path)
    assert too_deep is None
    for _ in range(MAX_JSON_DEPTH - 1):
        read = read[0]
    assert read == []


@pytest.mark.parametrize("content, words", [
    (b"{", "not valid JSON"), (b'{"a": NaN}', "NaN is not a JSON number"), (b'{"a": 1e999}', "out of a number's range"),
    (b'{"a": "\\udc80"}', "lone surrogate"), (b"\xff", "not UTF-8"), (b"[" * 5000, "nested deeper than"),
])
def test_a_sweep_json_that_is_not_json_names_the_file_and_why(tmp_path, content, words):
    path = tmp_path / "sweep.json"
    path.write_bytes(content)
    with pytest.raises(SweepFileError) as refused:
        read_json_file(path, LIMIT, kind="sweep description")
    assert refused.value.path == path and words in refused.value.problem and "\n" not in str(refused.value)
