"""Replacing a file atomically: readers see the old content or the new, never a torn file.

The content goes to a hidden temporary file in the same directory (``.<name>.<random>.tmp``,
so a rename never crosses file systems), which ``os.replace`` then moves over the target.
``durable=True`` also fsyncs the file before the rename and the directory after it, so the
new content survives a power loss, not only a killed process.

Files are created with :data:`FILE_MODE` less the process's umask, as ``open()`` creates
them (and directories with ``0o777`` less the umask): 0644 under umask 022, 0600 under
077. ``tempfile.mkstemp`` would create 0600 whatever the umask, shutting out a second
user or a reader service.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

#: The mode mlobs creates files with; the kernel takes the umask (and a directory's
#: default ACL) off it, so mlobs never reads or changes the process-wide umask.
FILE_MODE = 0o666

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_NAME_TRIES = 100  # 48 random bits per name: a clash is already unheard of


def write_atomically(path: Path, data: bytes | bytearray | memoryview | str | Iterable[bytes], *,
                     durable: bool = False) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8).

    The new file gets :data:`FILE_MODE` less the umask, whatever the mode of the file it
    replaces.

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
    fd, tmp = _create_temporary(path)
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


def _create_temporary(path: Path) -> tuple[int, str]:
    """Create a new, empty hidden file beside ``path`` and open it for writing.

    Returns:
        The open file descriptor and the file's path.

    Raises:
        OSError: the file cannot be created (FileExistsError after ``_NAME_TRIES`` taken
            names).
    """
    prefix = os.path.join(path.parent, f".{path.name}.")
    for _ in range(_NAME_TRIES):
        tmp = f"{prefix}{os.urandom(6).hex()}.tmp"
        try:
            return os.open(tmp, _CREATE_FLAGS, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", prefix)


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
