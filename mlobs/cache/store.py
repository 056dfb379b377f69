"""The artifact store: versioned component results on the local filesystem.

Layout (ADR-005, one folder per video under ``<root>/cache``)::

    <root>/cache/<platform_id>/<video_id>/
        cache_manifest.json        the index (mlobs.cache/1): every version of every component
        .lock                      taken while the index changes (several processes may save)
        <component>/v1.json        the results, one file per version
        <component>/v2.json

Identifiers become single safe path segments (:func:`mlobs.core.paths.safe_segment`), so no
platform_id, video_id or component name can leave the root.

Writes are atomic: a version file is written to a temporary name and renamed; the index is
rewritten the same way while the per-video lock is held, and version numbers are taken
under that lock, so concurrent savers of one key each get their own version and the index
always names files that exist in full. Every load checks the file's SHA-256 against the
index: a truncated, edited or vanished file is reported as corrupt, never returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlobs.cache.codecs import DEFAULT_CODEC, Codec
from mlobs.cache.entries import INDEX_FILE, CacheEntry, VideoCacheIndex
from mlobs.core.atomic_file import write_atomically
from mlobs.core.errors import ConfigError, CorruptArtifactError
from mlobs.core.paths import safe_segment
from mlobs.core.records import ModelRef
from mlobs.core.signature import IdempotencyKey

if TYPE_CHECKING:
    from filelock import FileLock

log = logging.getLogger("mlobs")

_VERSION_FILE = re.compile(r"v(\d+)\.json")
#: how ``None`` (an empty result without a value) is stored, whatever the codec: codecs
#: only ever see real values.
_NO_VALUE = b"null"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ArtifactStore:
    """Versioned results under ``root`` (normally ``<mlobs root>/cache``).

    Args:
        root: the cache directory; created on the first save.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------
    def video_dir(self, platform_id: str, video_id: str) -> Path:
        """``<root>/<platform_id>/<video_id>`` with safe segments."""
        return self.root / safe_segment(platform_id) / safe_segment(video_id)

    def _lock(self, video_dir: Path) -> FileLock:
        from filelock import FileLock  # on the first save: `import mlobs` leaves it out

        video_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(video_dir / ".lock"), timeout=60)

    # -- reading -------------------------------------------------------------------------
    def info(self, platform_id: str, video_id: str) -> VideoCacheIndex | None:
        """The video's index, or ``None`` when nothing is cached for it (or its index is
        unreadable: logged, and treated as empty so that the next save rebuilds it)."""
        path = self.video_dir(platform_id, video_id) / INDEX_FILE
        try:
            return VideoCacheIndex.from_dict(_read_json(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("mlobs: cache index %s is unreadable (%s); treating it as empty",
                        path, exc)
            return None

    def load_entry(self, platform_id: str, video_id: str, entry: CacheEntry,
                   codec: Codec = DEFAULT_CODEC) -> Any:
        """The value stored in ``entry``'s file.

        Raises:
            CorruptArtifactError: the file is missing or its bytes do not match the index.
        """
        data = self.verified_bytes(platform_id, video_id, entry)
        if data == _NO_VALUE:
            return None
        try:
            return codec.decode(data)
        except Exception as exc:  # a user codec may raise anything
            raise CorruptArtifactError(f"{entry.file_path} of {platform_id}/{video_id} "
                                       f"cannot be decoded: {exc}") from exc

    def verified_bytes(self, platform_id: str, video_id: str, entry: CacheEntry) -> bytes:
        """The bytes of ``entry``'s file, checked against its recorded SHA-256.

        Raises:
            CorruptArtifactError: the file is missing or its bytes do not match the index.
        """
        path = self.video_dir(platform_id, video_id) / entry.file_path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorruptArtifactError(f"{path} cannot be read: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != entry.content_sha256:
            raise CorruptArtifactError(f"{path} does not match its recorded SHA-256 "
                                       "(truncated or edited)")
        return data

    def load(self, platform_id: str, video_id: str, component: str,
             version: int | None = None, codec: Codec = DEFAULT_CODEC) -> Any:
        """The current (or the given) version of ``component``'s result.

        Raises:
            ConfigError: no such component or version.
            CorruptArtifactError: its file is missing, truncated or edited.
        """
        return self.load_entry(platform_id, video_id,
                               self.entry(platform_id, video_id, component, version), codec)

    def entry(self, platform_id: str, video_id: str, component: str,
              version: int | None = None) -> CacheEntry:
        """The current (or the given) version's index entry.

        Raises:
            ConfigError: nothing cached for the component, or no such version.
        """
        index = self.info(platform_id, video_id)
        versions = index.versions(component) if index else []
        if not versions:
            raise ConfigError(f"nothing cached for {component!r} of {platform_id}/{video_id}")
        if version is None:
            found = index.current(component) if index else None
        else:
            found = next((e for e in versions if e.version == version), None)
        if found is None:
            raise ConfigError(f"{component!r} of {platform_id}/{video_id} has no version "
                              f"{version}; it has {[e.version for e in versions]}")
        return found

    def videos(self) -> Iterator[VideoCacheIndex]:
        """Every video with a readable index, in path order."""
        for index_path in sorted(self.root.glob(f"*/*/{INDEX_FILE}")):
            try:
                yield VideoCacheIndex.from_dict(_read_json(index_path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("mlobs: cache index %s is unreadable (%s); skipped", index_path,
                            exc)

    # -- writing -------------------------------------------------------------------------
    def save(self, platform_id: str, video_id: str, component: str, value: Any, *,
             key: IdempotencyKey, input_hash: str, models: Sequence[ModelRef] = (),
             run_id: str | None = None, codec: Codec = DEFAULT_CODEC, status: str = "ok",
             empty_reason: str | None = None,
             metadata: dict[str, Any] | None = None) -> CacheEntry:
        """Store ``value`` as the next version of ``component`` and make it current.

        Returns:
            The new entry.

        Raises:
            ConfigError: the codec cannot encode ``value``.
            OSError: the file system refused the write (nothing is half-written).
        """
        data = _NO_VALUE if value is None else codec.encode(value)
        video_dir = self.video_dir(platform_id, video_id)
        component_dir = safe_segment(component)
        with self._lock(video_dir):
            index = self.info(platform_id, video_id) or VideoCacheIndex(
                platform_id, video_id, created_at=_now(), updated_at=_now())
            version = 1 + max(_highest_version_on_disk(video_dir / component_dir),
                              max((e.version for e in index.versions(component)), default=0),
                              index.last_versions.get(component, 0))
            index.last_versions[component] = version
            relative = f"{component_dir}/v{version}.json"
            write_atomically(video_dir / relative, data)
            entry = CacheEntry(
                component=component, version=version, file_path=relative,
                key_digest=key.digest, key_parts=key.parts(), input_hash=input_hash,
                model_name=", ".join(f"{m.name}:{m.version}" if m.version else m.name
                                     for m in models) or None,
                model_signature=key.model_signature, created_at=_now(), run_id=run_id,
                content_sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                codec=codec.name, status=status, empty_reason=empty_reason, is_current=True,
                metadata=dict(metadata or {}))
            for other in index.entries.get(component, ()):
                other.is_current = False
            index.entries.setdefault(component, []).append(entry)
            self._write_index(video_dir, index)
        return entry

    def set_current(self, platform_id: str, video_id: str, component: str,
                    version: int) -> CacheEntry:
        """Make ``version`` the current version of ``component`` (a rollback or a switch).

        Raises:
            ConfigError: no such component or version.
        """
        video_dir = self.video_dir(platform_id, video_id)
        with self._lock(video_dir):
            index = self.info(platform_id, video_id)
            chosen = None
            for entry in index.entries.get(component, ()) if index else ():
                entry.is_current = entry.version == version
                chosen = entry if entry.is_current else chosen
            if chosen is None or index is None:
                raise ConfigError(f"{component!r} of {platform_id}/{video_id} has no version "
                                  f"{version}")
            self._write_index(video_dir, index)
        return chosen

    def remove(self, platform_id: str, video_id: str, entries: Sequence[CacheEntry]
               ) -> list[CacheEntry]:
        """Delete these versions (files and index entries). A component whose current
        version goes gets its newest remaining version as current.

        Returns:
            The entries removed (those still in the index).
        """
        video_dir = self.video_dir(platform_id, video_id)
        doomed = {(e.component, e.version) for e in entries}
        removed: list[CacheEntry] = []
        with self._lock(video_dir):
            index = self.info(platform_id, video_id)
            if index is None:
                return removed
            for component in list(index.entries):
                keep = []
                for entry in index.entries[component]:
                    if (component, entry.version) in doomed:
                        (video_dir / entry.file_path).unlink(missing_ok=True)
                        removed.append(entry)
                    else:
                        keep.append(entry)
                if keep and not any(e.is_current for e in keep):
                    max(keep, key=lambda e: e.version).is_current = True
                if keep:
                    index.entries[component] = keep
                else:
                    del index.entries[component]
            self._write_index(video_dir, index)
        return removed

    def invalidate(self, platform_id: str, video_id: str, input_hash: str,
                   component: str | None = None) -> list[CacheEntry]:
        """Delete every version computed from ``input_hash`` (of one component, or all).

        Returns:
            The entries removed.
        """
        index = self.info(platform_id, video_id)
        if index is None:
            return []
        doomed = [e for name, versions in index.entries.items() for e in versions
                  if e.input_hash == input_hash and component in (None, name)]
        return self.remove(platform_id, video_id, doomed)

    def delete_video(self, platform_id: str, video_id: str) -> tuple[int, int]:
        """Delete everything cached for the video.

        Returns:
            ``(files, bytes)`` deleted; ``(0, 0)`` when nothing was there.
        """
        video_dir = self.video_dir(platform_id, video_id)
        if not video_dir.exists():
            return 0, 0
        files = [p for p in video_dir.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        shutil.rmtree(video_dir)
        parent = video_dir.parent
        if parent != self.root and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
        return len(files), size

    def _write_index(self, video_dir: Path, index: VideoCacheIndex) -> None:
        index.updated_at = _now()
        write_atomically(video_dir / INDEX_FILE,
                      json.dumps(index.to_dict(), indent=2, ensure_ascii=False).encode())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def _highest_version_on_disk(component_dir: Path) -> int:
    # Files the index lost (it was unreadable and rebuilt) must not be overwritten.
    try:
        names = os.listdir(component_dir)
    except OSError:
        return 0
    return max((int(m.group(1)) for n in names if (m := _VERSION_FILE.fullmatch(n))), default=0)
