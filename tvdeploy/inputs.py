"""Opening the files an operator hands to tvdeploy: one place, one set of messages.

Every failure is ONE InputFileError naming the path and what was expected; fifos and devices
are refused before they are opened (they would block or never end).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tvdeploy.errors import InputFileError


@contextmanager
def open_input(path: Path | str, what: str, missing: str | None = None) -> Iterator[BinaryIO]:
    """Open *path* for reading in binary mode; *what* names it in errors ("trust root file"),
    *missing* overrides the noun of the not-found message ("bundle not found")."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(f"{path}: {missing or what} not found") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(mode):
        raise InputFileError(f"{path}: not a regular file, expected a {what}")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None
    with fh:
        yield fh


def read_input(path: Path | str, what: str, limit: int) -> bytes:
    """The whole of *path*, refused when larger than *limit* bytes (without reading it)."""
    with open_input(path, what) as fh:
        if os.fstat(fh.fileno()).st_size > limit:
            raise InputFileError(f"{path}: {what} is larger than {limit} bytes")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise InputFileError(f"{path}: {what} is larger than {limit} bytes")
    return data
