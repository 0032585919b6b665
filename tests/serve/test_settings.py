"""serve.settings: a POST /api/train body's settings, checked before anything trains."""

import pytest

from mlknobs.errors import SettingsError
from mlknobs.serve.settings import parse


def test_unknown_names_from_a_client_are_shown_escaped_and_cut():
    with pytest.raises(SettingsError) as caught:
        parse({"\x1b[2J" + "x" * 100: 1, "bogus\n": 2})
    [(name, message)] = caught.value.problems
    assert name == "\\x1b[2J" + "x" * 32 + "…"                  # one_line(name, 40)
    assert message.startswith("unknown setting: \\x1b[2J" + "x" * 32 + "…, bogus\\n (known: ")
    assert "\x1b" not in message and "\n" not in message
