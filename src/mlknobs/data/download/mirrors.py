"""Where a dataset's files come from: the built-in mirrors, or the ones a user gives instead.

A mirror is either a built-in base URL (the official layout: BASE + file name) or one the user
gives: an http(s)/file URL or a local folder holding one sub-folder per dataset, laid out like the
data dir (BASE/mnist/train-images-idx3-ubyte.gz).

A user's list replaces the built-in one, as pip's --index-url replaces PyPI: an offline machine,
CI or a test whose --mirror folder lacks a file (a typo, a missing copy) fails naming that folder,
and sends nothing to the internet. The word `builtin` in the list stands for the built-in mirrors,
at its place: `--mirror DIR --mirror builtin` tries DIR, then the internet (pip's
--extra-index-url). A folder of that name is written ./builtin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mlknobs.data.datasets import DatasetSpec
from mlknobs.errors import UnsupportedMirror

BUILTIN = "builtin"   # in a user's mirror list: the dataset's built-in mirrors, at that place


@dataclass(frozen=True)
class Mirror:
    base: str                 # URL or local folder, as the user wrote it
    per_dataset: bool = True  # user mirrors hold BASE/<dataset>/<file>; built-ins BASE<file>

    @property
    def stands_for_builtin(self) -> bool:
        """The word `builtin` of a user's list: mirrors_for puts the built-in mirrors in its place."""
        return self.per_dataset and self.base == BUILTIN

    @property
    def is_local(self) -> bool:
        if self.stands_for_builtin:
            return False
        return urlparse(self.base).scheme in ("", "file") or _looks_like_windows_path(self.base)

    def locate(self, dataset: str, filename: str) -> str:
        """The URL or local path of one file on this mirror."""
        assert not self.stands_for_builtin, "mirrors_for replaces `builtin` by the built-in mirrors"
        if self.is_local:
            return str(self.local_root() / (dataset if self.per_dataset else "") / filename)
        base = self.base if self.base.endswith("/") else self.base + "/"
        return f"{base}{dataset}/{filename}" if self.per_dataset else f"{base}{filename}"

    def local_root(self) -> Path:
        parsed = urlparse(self.base)
        if parsed.scheme == "file":
            return Path(url2pathname(unquote(parsed.path)))
        return Path(self.base).expanduser()


def _looks_like_windows_path(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[0].isalpha() and text[2] in "\\/"


def parse_mirror(text: str) -> Mirror:
    """A user-given mirror (or the word `builtin`); raises UnsupportedMirror (a ValueError) for one
    we cannot fetch from."""
    text = text.strip()
    if not text:
        raise UnsupportedMirror(text, "empty mirror")
    scheme = urlparse(text).scheme
    if scheme not in ("", "http", "https", "file") and not _looks_like_windows_path(text):
        raise UnsupportedMirror(text, f"unsupported mirror {text!r}: use an http(s):// or file:// URL "
                                      f"or a local folder")
    return Mirror(text, per_dataset=True)


def mirrors_for(spec: DatasetSpec, user_mirrors: tuple[str, ...] | list[str] = ()) -> list[Mirror]:
    """The mirrors to try, in order: the user's if any are given (`builtin` among them standing for
    the dataset's built-in ones), else the built-in ones. Each mirror is tried once."""
    builtin = [Mirror(m, per_dataset=False) for m in spec.mirrors]
    if not user_mirrors:
        return builtin
    chosen = []
    for text in user_mirrors:
        mirror = parse_mirror(text)
        chosen += builtin if mirror.stands_for_builtin else [mirror]
    return list(dict.fromkeys(chosen))
