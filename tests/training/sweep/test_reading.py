"""training/sweep/reading.py: the one bounded reader of a sweep's files (sweep.json, results.jsonl).

Every hostile file is refused by name, in bounded time and memory: a FIFO (which would block for
ever), a link to /dev/zero (endless), a folder, a file over the cap, a line over the cap, JSON
nested past the cap, NaN and Infinity.
"""

from __future__ import annotations

import os
import time

import pytest

from mlknobs.errors import SweepFileError
from mlknobs.training.sweep.reading import (
    MAX_JSON_DEPTH,
    NotJson,
    loads,
    nested_deeper_than,
    read_json_file,
    read_json_lines,
)

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
def test_json_nested_past_the_cap_is_refused_fast(text):
    started = time.perf_counter()
    with pytest.raises(NotJson, match="nested"):
        loads(text)
    assert time.perf_counter() - started < 0.5


def test_brackets_inside_strings_are_not_nesting():
    deep_text = '"' + "[" * 1000 + '"'
    assert loads(f'{{"error": {deep_text}, "x": "\\"{{[", "y": "\\\\"}}'.encode())["error"] == "[" * 1000
    assert not nested_deeper_than(b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[["]', MAX_JSON_DEPTH)
    assert nested_deeper_than(b'["\\\\", ' + b"[" * 20 + b"]" * 21, MAX_JSON_DEPTH)   # the string ends at \\"


def test_the_depth_check_is_linear_even_on_pathological_quotes():
    started = time.perf_counter()
    for text in (b'"\\"' * 300_000, b'"' * 1_000_000, b"[]" * 1_000_000, b'["' + b'\\"' * 500_000):
        nested_deeper_than(text, MAX_JSON_DEPTH)
    assert time.perf_counter() - started < 2.0


def test_a_sweep_json_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "sweep.json"
    for content in (b"{", b'{"a": NaN}', b"[" * 5000):
        path.write_bytes(content)
        with pytest.raises(SweepFileError) as refused:
            read_json_file(path, LIMIT, kind="sweep description")
        assert refused.value.path == path and "\n" not in str(refused.value)
