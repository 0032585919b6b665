"""mlknobs download: fetch and verify a dataset's four IDX files."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.options import data_options, dataset_option, progress_for
from mlknobs.cli.output import say


@click.command("download")
@dataset_option
@data_options
@click.option("--force", is_flag=True, help="Fetch again even if a verified copy is present.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars; print only errors.")
def command(dataset: str, data_dir: Path, mirrors: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Download a dataset's four IDX files and verify their SHA-256.

    Mirrors are tried in order: yours (--mirror, MLKNOBS_MIRROR) if you give any, else the built-in
    ones. Yours replace the built-in ones, so a folder that lacks a file fails without going online;
    add `--mirror builtin` to fall back to them. A file reaches its final name only after its
    checksum passes; a verified file is not fetched again.

    \b
    Examples:
      mlknobs download
      mlknobs download --dataset fashion-mnist
      mlknobs download --mirror ../shared/data      # offline: DIR/mnist/*.gz
      mlknobs download --mirror ../shared/data --mirror builtin   # DIR, then the internet
      MLKNOBS_MIRROR=https://example.org/datasets/ mlknobs download
    """
    from mlknobs.data.datasets import get_dataset
    from mlknobs.data.download import ensure_dataset

    paths = ensure_dataset(get_dataset(dataset), data_dir, mirrors, force=force, progress=progress_for(quiet))
    if not quiet:
        for path in paths.values():
            say(f"ok  {path}")
