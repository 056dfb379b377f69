"""The per-run manifest document (``"schema": "mlobs.manifest/1"``): build, write, read.

Layout: the run record's fields at the top level, ``components`` holding one component
record per invocation in finishing order. JSON Schema: ``docs/manifest.schema.json``.
Writes are atomic (temporary file in the same directory, then ``os.replace``), so a
reader — or a run killed mid-way — only ever sees a complete document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlobs.core.atomic_file import write_atomically
from mlobs.core.errors import ManifestError
from mlobs.core.records import ComponentRecord, RunRecord, compact_json, record_json

MANIFEST_SCHEMA = "mlobs.manifest/1"


class ManifestText:
    """A manifest kept as encoded JSON: each component is encoded once, when it arrives,
    so rewriting the manifest of a long run costs a join of bytes, not a re-encoding."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self._components: list[bytes] = []
        #: bytes of the encoded components so far (the document is a little larger).
        self.components_bytes = 0

    def add_component(self, record: ComponentRecord) -> None:
        """Encode ``record`` and add it. Raises ValueError or TypeError (nothing added)
        when JSON cannot hold it (NaN, a non-JSON value)."""
        encoded = record_json(record)
        self._components.append(encoded)
        self.components_bytes += len(encoded) + 1

    def __len__(self) -> int:
        return len(self._components)

    def render(self) -> bytes:
        """The whole document as UTF-8 JSON."""
        head = compact_json({"schema": MANIFEST_SCHEMA, **self.run.to_dict()}).encode()
        return b"".join((head[:-1], b',"components":[', b",".join(self._components), b"]}"))


def in_finishing_order(components: list[ComponentRecord]) -> list[ComponentRecord]:
    """The manifest's order: by ``finished_at`` (ties by component_run_id)."""
    return sorted(components, key=lambda c: (c.finished_at, c.component_run_id))


def manifest_document(run: RunRecord, components: list[ComponentRecord]) -> str:
    """The ``mlobs.manifest/1`` JSON text of a run and its components (in the order
    given; see :func:`in_finishing_order`)."""
    text = ManifestText(run)
    for component in components:
        text.add_component(component)
    return text.render().decode()


def write_manifest(path: Path, document: dict[str, Any] | str | bytes, *,
                   durable: bool = False) -> None:
    """Atomically replace ``path`` with ``document`` (a dict, or JSON text or bytes).

    Args:
        durable: also fsync the file and its directory (survives a power loss, not just a
            killed process); used for the final write of a run.
    """
    data = document if isinstance(document, (str, bytes)) else compact_json(document)
    write_atomically(path, data, durable=durable)


def read_manifest(path: str | os.PathLike[str]) -> tuple[RunRecord, list[ComponentRecord]]:
    """Parse a manifest file into its run and component records.

    Raises:
        ManifestError: the file is missing, not JSON, of another schema, or malformed
            (the message names the file and the problem).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no such manifest") from exc
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: not a readable JSON document: {exc}") from exc
    return parse_manifest(document, source=str(path))


def parse_manifest(document: Any, *, source: str = "<manifest>"
                   ) -> tuple[RunRecord, list[ComponentRecord]]:
    """Records from an already-decoded manifest document (see :func:`read_manifest`)."""
    if not isinstance(document, dict) or document.get("schema") != MANIFEST_SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ManifestError(f"{source}: expected schema {MANIFEST_SCHEMA!r}, found {found!r}")
    try:
        body = {k: v for k, v in document.items() if k not in ("schema", "components")}
        run = RunRecord.from_dict(body)
        components = [ComponentRecord.from_dict(c) for c in document.get("components", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{source}: malformed record: {type(exc).__name__}: {exc}") from exc
    return run, components


def manifest_status(path: Path) -> str | None:
    """The run status a manifest says (``running``, ``ok``, ``error``), or ``None`` when
    it is missing or unreadable; reads the document without building its records."""
    try:
        return json.loads(path.read_bytes()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
