"""Replacing a file atomically: readers see the old content or the new, never a torn file.

The content goes to a hidden temporary file in the same directory (``.<name>.<random>.tmp``,
so a rename never crosses file systems), which ``os.replace`` then moves over the target.
``durable=True`` also fsyncs the file before the rename and the directory after it, so the
new content survives a power loss, not only a killed process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, data: bytes | bytearray | memoryview | str | Iterable[bytes], *,
                     durable: bool = False) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8).

    Args:
        path: the file to write; its directory is created when missing.
        data: the whole new content, or an iterable of byte chunks written in turn (so a
            large file need not be held in memory).
        durable: fsync the file and its directory (see the module docstring).

    Raises:
        OSError: the file could not be written (the target is left as it was and the
            temporary file is removed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, str):
                handle.write(data.encode())
            elif isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                handle.writelines(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename, creation or deletion in ``directory`` durable. Best effort: some file
    systems cannot fsync a directory, and the data itself is already synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
