"""files/jsonl.py: strict JSON written as one line, and the one strict reader of JSON from outside.

The reader's callers (model metadata, a sweep's files, a diverged run's curve, the training panel's
requests) test that each refuses through it; here, what the reader itself refuses, and how fast.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from mlknobs.files.jsonl import MAX_DEPTH, NotJson, nested_deeper_than, read_strict_json, strict_json

LIMIT = 1 << 20


def read(data, **caps):
    return read_strict_json(data, **{"max_size": LIMIT, **caps})


def test_what_strict_json_writes_the_reader_reads_back():
    record = {"loss": np.float32(0.5), "curve": [[1, math.nan], (2, math.inf)], "name": "zero\n\N{GRINNING FACE}"}
    line = strict_json(record)
    assert "\n" not in line and "NaN" not in line and "Infinity" not in line
    assert read(line.encode()) == {"loss": 0.5, "curve": [[1, None], [2, None]], "name": "zero\n\N{GRINNING FACE}"}


@pytest.mark.parametrize("data", [b'{"a": [1, 2.5, "x", true, null]}', '{"a": [1, 2.5, "x", true, null]}'])
def test_bytes_and_text_read_alike(data):
    assert read(data) == {"a": [1, 2.5, "x", True, None]}


@pytest.mark.parametrize("data, words", [
    (b"[" * 200_000, f"nested deeper than {MAX_DEPTH} levels"),
    (b'{"a":' * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 200_000, f"nested deeper than {MAX_DEPTH} levels"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
    (b'{"a": NaN}', "NaN is not a JSON number"), (b"[Infinity]", "Infinity is not a JSON number"),
    (b"[-Infinity]", "-Infinity is not a JSON number"), (b"[1e999]", "1e999 is out of a number's range"),
    (b"[-1e400]", "out of a number's range"),
    (b'["\\udc80"]', "not valid Unicode at [0] ('\\udc80' is a lone surrogate)"),
    (b'{"k": {"\\ud800": 1}}', "not valid Unicode at ['k'] (a key)"),
    ('{"created": "2024\ud800"}', "not valid Unicode at ['created']"),
    (b'"\xed\xa0\x80"', "not UTF-8 (byte 1 is ed)"),              # a surrogate encoded as UTF-8
    (b"\xff\xfe[]", "not UTF-8 (byte 0 is ff)"),
    (b"{", "not valid JSON (Expecting property name"), (b"", "not valid JSON"), (b"[1] [2]", "Extra data"),
    (b"9" * 5000, "not valid JSON"),
])
def test_what_is_not_strict_json_is_refused_in_words(data, words):
    with pytest.raises(NotJson) as refused:
        read(data)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_the_caps_are_the_callers():
    assert read(b"[" * 3 + b"]" * 3, max_depth=3) == [[[]]]
    with pytest.raises(NotJson, match="nested deeper than 2 levels"):
        read(b"[" * 3 + b"]" * 3, max_depth=2)
    assert read(b" " * 9 + b"1", max_size=10) == 1
    with pytest.raises(NotJson, match="longer than 10 bytes"):
        read(b" " * 10 + b"1", max_size=10)
    with pytest.raises(NotJson, match="longer than 10 characters"):
        read(" " * 10 + "1", max_size=10)


def test_a_pair_of_surrogate_escapes_is_one_character_and_duplicate_keys_keep_the_last():
    assert read(b'{"face": "\\ud83d\\ude00"}') == {"face": "\N{GRINNING FACE}"}
    assert read(b'{"a": 1, "a": 2}') == {"a": 2}      # as the json module has always read them


def test_brackets_inside_strings_are_not_nesting():
    deep_text = '"' + "[" * 1000 + '"'
    assert read(f'{{"error": {deep_text}, "x": "\\"{{[", "y": "\\\\"}}'.encode())["error"] == "[" * 1000
    assert not nested_deeper_than('["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', 16)
    assert nested_deeper_than('["\\\\", ' + "[" * 20 + "]" * 21, 16)    # the string ends at \\"


def test_the_depth_check_is_linear_even_on_pathological_quotes():
    started = time.perf_counter()
    for text in ('"\\"' * 300_000, '"' * 1_000_000, "[]" * 1_000_000, '["' + '\\"' * 500_000, "[" * 2_000_000):
        nested_deeper_than(text, MAX_DEPTH)
    assert time.perf_counter() - started < 2.0


def test_a_megabyte_of_nesting_is_refused_in_a_fraction_of_a_second():
    started = time.perf_counter()
    with pytest.raises(NotJson, match="nested"):
        read(b"[" * LIMIT)
    assert time.perf_counter() - started < 0.5


def test_the_depth_scan_agrees_with_the_parser_on_valid_json():
    rng = np.random.default_rng(0)
    for _ in range(200):
        depth = int(rng.integers(0, 20))
        value = "x[{"
        for _ in range(depth):
            value = [value] if rng.random() < 0.5 else {"k]": value}
        text = json.dumps(value)
        assert nested_deeper_than(text, 10) == (depth > 10)
