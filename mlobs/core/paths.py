"""Turning identifiers (platform_id, video_id, run_id) into safe path segments.

An identifier becomes one directory name that cannot escape the root: characters outside
``[A-Za-z0-9._-]`` are percent-encoded, ``.``/``..`` and empty names are encoded too, and a
name longer than 120 characters is cut and suffixed with a SHA-256 prefix of the whole
identifier so distinct identifiers stay distinct.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mlobs.core.errors import ConfigError

_SAFE = re.compile(r"[A-Za-z0-9._-]")
MAX_SEGMENT_CHARS = 120


def safe_segment(identifier: str) -> str:
    """Encode ``identifier`` as a single safe directory name.

    Raises:
        ConfigError: ``identifier`` is not a string.
    """
    if not isinstance(identifier, str):
        raise ConfigError(f"identifier must be a string, got {type(identifier).__name__}")
    encoded = "".join(ch if _SAFE.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode())
                      for ch in identifier)
    if encoded in ("", ".", ".."):
        encoded = "%" + identifier.encode().hex().upper() if identifier else "%EMPTY"
    if len(encoded) > MAX_SEGMENT_CHARS:
        digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = f"{encoded[:MAX_SEGMENT_CHARS - 17]}~{digest}"
    return encoded


def manifest_path(runs_dir: Path, platform_id: str, video_id: str, run_id: str) -> Path:
    """``<runs_dir>/<platform_id>/<video_id>/<run_id>/manifest.json`` with safe segments."""
    return (runs_dir / safe_segment(platform_id) / safe_segment(video_id)
            / safe_segment(run_id) / "manifest.json")


def tree_size(path: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``path`` (links not followed; files that vanish while
    walking are skipped)."""
    files = size = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for filename in filenames:
            try:
                size += os.lstat(os.path.join(dirpath, filename)).st_size
            except OSError:
                continue
            files += 1
    return files, size
