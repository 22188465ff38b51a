"""Up-front checks of a command's output files, before any of them is opened for writing.

An output that is an input (``--out a.jsonl --audits a.jsonl``) or another output
(``--outcomes X --report X``) would be truncated or interleaved while it is read or written:
``USAGE`` (exit 2). An output whose directory does not exist would fail only when it is written,
after the whole run: ``FILE_ERROR`` (exit 7) now. ``-`` (stdout) is no file and is not checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import click

from .exit_codes import CliError

STDOUT = Path("-")


def check_outputs(inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None]) -> None:
    """Refuse ``outputs`` (option → path) that name an input, each other, or a missing directory.

    Files are compared by identity when both exist (``os.path.samefile``: hard and symbolic links
    included), else by their resolved paths. ``click.UsageError`` or ``CliError("FILE_ERROR")``.
    """
    read = [(name, path) for name, path in inputs.items() if path is not None and path != STDOUT]
    written = [(name, path) for name, path in outputs.items() if path is not None and path != STDOUT]
    for index, (name, path) in enumerate(written):
        for other, other_path in [*read, *written[:index]]:
            if same_file(path, other_path):
                raise click.UsageError(
                    f"{name} {path} is the same file as {other} {other_path}: name another file for {name}"
                )
    for name, path in written:
        directory = path.absolute().parent
        if not directory.is_dir():
            raise CliError("FILE_ERROR", f"{name} {path}: the directory {directory} does not exist")


def same_file(one: Path, other: Path) -> bool:
    """Whether two paths name one file: the same file when both exist, else the same resolved path."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet)
        pass
    try:
        return one.resolve() == other.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the paths as written
        return one.absolute() == other.absolute()
