"""The per-video cache index: which versions of which component results exist.

One ``cache_manifest.json`` per video (schema ``mlobs.cache/1``) lists, per component,
its versions (ADR-005 "versioned intermediate results"): the version number, the file,
the idempotency key it was computed under (digest and parts), the input hash, the model,
when and by which run it was made, its content digest and whether it is the current
version. Exactly one version per component is current.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlobs.core.records import iso_utc, parse_utc

INDEX_SCHEMA = "mlobs.cache/1"
INDEX_FILE = "cache_manifest.json"


@dataclass
class CacheEntry:
    """One stored version of one component's result.

    ``file_path`` is relative to the video's cache directory (``<component>/v<N>.json``);
    ``content_sha256`` is the digest of the file's bytes, checked on every load; sizes are
    bytes.
    """

    component: str
    version: int
    file_path: str
    key_digest: str
    key_parts: dict[str, Any]
    input_hash: str
    model_name: str | None
    model_signature: str | None
    created_at: datetime
    run_id: str | None
    content_sha256: str
    size_bytes: int
    codec: str = "json"
    status: str = "ok"
    empty_reason: str | None = None
    is_current: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["created_at"] = iso_utc(self.created_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["created_at"] = parse_utc(data["created_at"])
        return cls(**kwargs)


@dataclass
class VideoCacheIndex:
    """All cached versions of one video's components."""

    platform_id: str
    video_id: str
    created_at: datetime
    updated_at: datetime
    entries: dict[str, list[CacheEntry]] = field(default_factory=dict)
    #: per component, the highest version number ever issued: numbers are never reused,
    #: so a run's recorded ``cache_version`` never names other content after a GC.
    last_versions: dict[str, int] = field(default_factory=dict)

    def versions(self, component: str) -> list[CacheEntry]:
        """The component's versions, oldest first."""
        return sorted(self.entries.get(component, ()), key=lambda e: e.version)

    def current(self, component: str) -> CacheEntry | None:
        return next((e for e in self.entries.get(component, ()) if e.is_current), None)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": INDEX_SCHEMA, "platform_id": self.platform_id,
                "video_id": self.video_id, "created_at": iso_utc(self.created_at),
                "updated_at": iso_utc(self.updated_at),
                "entries": {name: [e.to_dict() for e in self.versions(name)]
                            for name in sorted(self.entries)},
                "last_versions": dict(sorted(self.last_versions.items()))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoCacheIndex:
        if data.get("schema") != INDEX_SCHEMA:
            raise ValueError(f"not an {INDEX_SCHEMA} index: schema {data.get('schema')!r}")
        return cls(platform_id=data["platform_id"], video_id=data["video_id"],
                   created_at=parse_utc(data["created_at"]),
                   updated_at=parse_utc(data["updated_at"]),
                   entries={name: [CacheEntry.from_dict(e) for e in versions]
                            for name, versions in data.get("entries", {}).items()},
                   last_versions={str(k): int(v)
                                  for k, v in data.get("last_versions", {}).items()})
