"""What the commands print: results on stdout, progress and messages on stderr.

stdout carries results: a closed stdout is an error (exit 1), a reader that leaves early
(`mlknobs eval | head`) is not. stderr carries progress bars and epoch lines, which are
best-effort: a full or closed stderr must never cost a training run its model.
Text that comes from files (class names, run ids) is printed through `printable` (mlknobs.text), so a
model file cannot move the cursor, retitle the terminal or forge output lines. `shaded_rows` draws
a 28x28 input as text, for every command that shows one (predict --show, explain).
"""

from __future__ import annotations

import io
import sys

import click

from mlknobs.text import printable

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "BestEffortStream", "StdoutClosed",
           "echo_json", "note", "printable", "say", "shaded_rows"]

# How an mlknobs process ends, the one table: click's usage errors exit EXIT_USAGE by themselves.
EXIT_OK = 0
EXIT_FAILED = 1            # an error: a library error, unwritable output, out of memory
EXIT_USAGE = 2             # a usage mistake: an option, a value or an environment variable the user got wrong
EXIT_INTERRUPTED = 130     # Ctrl-C (128 + SIGINT), as shells report it


class StdoutClosed(click.ClickException):
    """stdout was closed before the command could print its result."""

    def __init__(self):
        super().__init__("stdout is closed: nowhere to print the result")


def say(line: str = "") -> None:
    """One line of results on stdout."""
    if sys.stdout is None:
        raise StdoutClosed()
    click.echo(line)


def echo_json(obj) -> None:
    """One line of strict JSON on stdout: NumPy scalars become numbers, NaN and infinity become null."""
    from mlknobs.files import strict_json  # here, not at the top: `mlknobs --help` needs no files code

    say(strict_json(obj))


def note(line: str) -> None:
    """A message on stderr (progress, epoch lines, warnings): best-effort, never fatal."""
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass


class BestEffortStream(io.TextIOBase):
    """A text stream in front of stderr that drops what cannot be written instead of raising.

    Progress bars and epoch lines go through it: `2>/dev/full` or a closed stderr then loses the
    progress display, not the run. The first failure silences it for good (no retry per line).
    """

    def __init__(self, stream):
        super().__init__()
        self._stream = stream
        self._broken = stream is None

    @property
    def encoding(self):
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self):
        return getattr(self._stream, "errors", None) or "backslashreplace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return not self._broken and self._stream.isatty()
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        if self._broken:
            raise io.UnsupportedOperation("no usable stderr")
        return self._stream.fileno()

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._broken = True
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._broken = True


def shaded_rows(pixels) -> list[str]:
    """A 28x28 uint8 image as framed text, two characters per pixel (terminal cells are tall)."""
    shades = " ░▒▓█"
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        (shades + "┌─┐│└┘").encode(encoding)
        top, bottom, side = "┌" + "─" * 56 + "┐", "└" + "─" * 56 + "┘", "│"
    except (UnicodeEncodeError, LookupError):
        shades, top, bottom, side = " .:o@", "+" + "-" * 56 + "+", "+" + "-" * 56 + "+", "|"
    levels = (pixels.astype(int) * (len(shades) - 1) + 127) // 255        # 0..255 -> 0..4, rounded
    return [top] + [side + "".join(shades[v] * 2 for v in row) + side for row in levels] + [bottom]
