"""Intermediate directories: short-lived working data of one video (extracted frames, ...).

Rule (orchestration notes §7, model system rules §6): intermediate data such as the
union frames (``frames_dir``) is kept 7 days for debugging and re-rendering, then
deleted. A pipeline asks for such a directory with :func:`intermediate_dir`; it is
created and *registered* (a small JSON file inside it records when), so that ``mlobs gc``
can expire it (``--intermediate-ttl-days``, default 7) and ``mlobs forget`` deletes it with
the rest of the video::

    <root>/cache/<platform_id>/<video_id>/intermediate/<name>/
        .mlobs-intermediate.json     {"schema": "mlobs.intermediate/1", "platform_id": ...,
                                      "video_id": ..., "name": ..., "created_at": ISO UTC}
        ...                          whatever the pipeline writes

Only directories holding the registration file are ever expired; anything else under
``intermediate/`` is left alone. The TTL counts from the first registration: asking for
the same directory again returns it as it is and does not extend its life.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlobs.core.atomic_file import write_atomically
from mlobs.core.checks import check_word
from mlobs.core.config import configured_settings
from mlobs.core.limits import NAME_MAX_CHARS
from mlobs.core.paths import safe_segment, tree_size
from mlobs.core.records import iso_utc, parse_utc

log = logging.getLogger("mlobs")

INTERMEDIATE_SCHEMA = "mlobs.intermediate/1"
#: the registration file inside each intermediate directory.
REGISTRATION_FILE = ".mlobs-intermediate.json"
#: the folder under a video's cache directory holding its intermediate directories.
INTERMEDIATE_FOLDER = "intermediate"


@dataclass(frozen=True)
class Intermediate:
    """One registered intermediate directory, with its size now (files and bytes)."""

    platform_id: str
    video_id: str
    name: str
    path: Path
    created_at: datetime
    files: int
    size_bytes: int


def intermediate_path(platform_id: str, video_id: str, name: str, *,
                      root: str | os.PathLike[str]) -> Path:
    """Where :func:`intermediate_dir` puts ``name`` under ``root`` (nothing is created)."""
    return (Path(root) / "cache" / safe_segment(platform_id) / safe_segment(video_id)
            / INTERMEDIATE_FOLDER / safe_segment(name))


def intermediate_dir(platform_id: str, video_id: str, name: str, *,
                     root: str | os.PathLike[str] | None = None) -> Path:
    """Create (if needed) and register an intermediate directory of a video.

    Args:
        platform_id: the video's platform.
        video_id: the video.
        name: what it holds, e.g. ``"frames"``; one safe path segment is made of it.
        root: the mlobs root (default: this process's configured root,
            ``mlobs.configure(root=...)`` or ``$MLOBS_ROOT``).

    Returns:
        ``<root>/cache/<platform_id>/<video_id>/intermediate/<name>``, existing and
        registered; ``mlobs gc`` deletes it once it is older than the intermediate TTL.

    Raises:
        ConfigError: an identifier or ``name`` is not a non-empty string of valid
            Unicode of at most 255 characters.
        OSError: the directory cannot be created.
    """
    for label, value in (("platform_id", platform_id), ("video_id", video_id),
                         ("intermediate directory name", name)):
        check_word(label, value, NAME_MAX_CHARS)
    path = intermediate_path(platform_id, video_id, name,
                             root=configured_settings().root if root is None else root)
    path.mkdir(parents=True, exist_ok=True)
    registration = path / REGISTRATION_FILE
    if read_registration(registration) is None:
        document = {"schema": INTERMEDIATE_SCHEMA, "platform_id": platform_id,
                    "video_id": video_id, "name": name,
                    "created_at": iso_utc(datetime.now(timezone.utc))}
        # Two processes registering at once: the last rename wins, both are valid.
        write_atomically(registration, json.dumps(document, ensure_ascii=False))
    return path


def read_registration(path: Path) -> dict[str, object] | None:
    """The registration document at ``path``, or ``None`` when missing or unreadable."""
    try:
        document = json.loads(path.read_bytes())
        if not isinstance(document, dict) or document.get("schema") != INTERMEDIATE_SCHEMA:
            return None
        parse_utc(str(document["created_at"]))
        return document
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_intermediates(cache_dir: str | os.PathLike[str]) -> Iterator[Intermediate]:
    """Every registered intermediate directory under ``cache_dir`` (``<root>/cache``), in
    path order. Directories with a missing or unreadable registration are skipped (and
    logged when the file exists but cannot be read)."""
    for registration in sorted(Path(cache_dir).glob(
            f"*/*/{INTERMEDIATE_FOLDER}/*/{REGISTRATION_FILE}")):
        document = read_registration(registration)
        if document is None:
            log.warning("mlobs: intermediate registration %s is unreadable; the directory "
                        "is left alone", registration)
            continue
        files, size = tree_size(registration.parent)
        yield Intermediate(platform_id=str(document["platform_id"]),
                           video_id=str(document["video_id"]), name=str(document["name"]),
                           path=registration.parent,
                           created_at=parse_utc(str(document["created_at"])),  # type: ignore[arg-type]
                           files=files, size_bytes=size)
