"""mlknobs.text: values and messages from outside shown on one safe, short line."""

from mlknobs.errors import DownloadSettingsError
from mlknobs.text import ELLIPSIS, error_line, one_line, value_repr


def test_one_line_escapes_control_characters_and_cuts_to_the_limit():
    assert one_line("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\nc"
    assert one_line("x" * 100, 10) == "x" * 9 + ELLIPSIS
    assert one_line("a-very-long-name.npz", 12, keep_end=True) == "a-ver" + ELLIPSIS + "me.npz"


def test_error_line_joins_the_message_lines_or_names_the_type():
    assert error_line(ValueError("bad\n   value")) == "bad value"
    assert error_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_value_repr_is_a_short_repr_even_of_a_huge_value():
    assert value_repr("abc") == "'abc'" and value_repr(1.5) == "1.5"
    long = value_repr("\x1b" * 10_000)
    assert len(long) == 40 and long.startswith("'\\x1b") and long.endswith(ELLIPSIS)
    assert value_repr(10 ** 10_000) == "a very large number"     # repr itself refuses (int digit limit)


def test_an_error_about_a_huge_setting_value_is_one_short_line():
    message = str(DownloadSettingsError("retries", 10 ** 10_000, "a whole number from 0 to 20"))
    assert message == "retries must be a whole number from 0 to 20, got a very large number"
    message = str(DownloadSettingsError("MLKNOBS_DOWNLOAD_TIMEOUT", "9" * 1000, "a number of seconds"))
    assert message.startswith("MLKNOBS_DOWNLOAD_TIMEOUT must be a number of seconds, got '999") and len(message) < 100
