"""Reading the versions of a video's cached results (ADR-005): list the cached videos, a
version's result as text, a unified diff of two versions. The CLI (`mlobs cache`) and the
admin views share them; setting the current version is
:meth:`mlobs.cache.store.ArtifactStore.set_current`."""

from __future__ import annotations

import difflib
import json

from mlobs.cache.entries import CacheEntry, VideoCacheIndex
from mlobs.cache.store import ArtifactStore
from mlobs.core.errors import CorruptArtifactError


def list_videos(store: ArtifactStore, *, platform_id: str | None = None,
                video_id: str | None = None) -> list[VideoCacheIndex]:
    """The cache indexes of the store, optionally only of one platform and/or video."""
    if platform_id is not None and video_id is not None:
        index = store.info(platform_id, video_id)
        return [index] if index is not None else []
    return [index for index in store.videos()
            if platform_id in (None, index.platform_id) and video_id in (None, index.video_id)]


def version_text(store: ArtifactStore, platform_id: str, video_id: str,
                 entry: CacheEntry) -> str:
    """A version's result as text: pretty-printed JSON (sorted keys) for the JSON codec,
    the file's text for another codec.

    Raises:
        CorruptArtifactError: the file is missing, edited, or not text.
    """
    path = store.video_dir(platform_id, video_id) / entry.file_path
    data = store.verified_bytes(platform_id, video_id, entry)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptArtifactError(f"{path} (codec {entry.codec!r}) is not text; it cannot "
                                   "be diffed") from exc
    if entry.codec == "json":
        try:
            return json.dumps(json.loads(text), indent=2, sort_keys=True,
                              ensure_ascii=False) + "\n"
        except ValueError as exc:
            raise CorruptArtifactError(f"{path} is not JSON: {exc}") from exc
    return text if text.endswith("\n") or not text else text + "\n"


def diff_versions(store: ArtifactStore, platform_id: str, video_id: str, component: str,
                  v1: int, v2: int, *, context: int = 3) -> str:
    """A unified diff of two versions of a component's result (empty when equal).

    Raises:
        ConfigError: nothing cached for the component, or no such version.
        CorruptArtifactError: a version's file is missing, edited, or not text.
    """
    old = store.entry(platform_id, video_id, component, v1)
    new = store.entry(platform_id, video_id, component, v2)
    a = version_text(store, platform_id, video_id, old).splitlines(keepends=True)
    b = version_text(store, platform_id, video_id, new).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=_label(component, old),
                                        tofile=_label(component, new), n=context))


def _label(component: str, entry: CacheEntry) -> str:
    return (f"{component} v{entry.version} ({entry.model_name or 'no model'}, "
            f"{entry.created_at.strftime('%Y-%m-%d %H:%M:%S')} UTC, run {entry.run_id or '-'})")
