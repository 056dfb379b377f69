"""Deleting directory trees for gc and forget: count what goes, remove it, prune the
empty parents; a failure is reported, never raised, so the other deletions go on."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlobs.core.paths import tree_size


def remove_tree(path: Path, problems: list[str]) -> tuple[int, int] | None:
    """Delete ``path`` and everything under it.

    Returns:
        ``(files, bytes)`` deleted, or ``None`` when it was already gone or could not be
        deleted (then ``"<path>: <error>"`` is appended to ``problems``).
    """
    files, size = tree_size(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(f"{path}: {exc}")
        return None
    return files, size


def prune_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty directories from ``path`` upwards, never ``stop`` or above it."""
    try:
        path.relative_to(stop)
    except ValueError:
        return
    while path != stop and path.is_dir():
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): stop here
            return
        path = path.parent
