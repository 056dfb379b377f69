"""The dashboards as JSON files: render, write, and compare with what is committed.

Files are ``<uid>.json``, keys sorted, two-space indents and a final newline, so a
regeneration without a code change is byte-identical (the freshness test relies on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from mlobs_dashboards import cache, component, memory, overview, quality

#: every dashboard's builder, in the order the docs present them.
BUILDERS: tuple[Callable[[], Dashboard], ...] = (
    overview.build, component.build, memory.build, cache.build, quality.build)
#: where the committed JSON lives in a checkout (src/mlobs_dashboards → generated).
GENERATED_DIR = Path(__file__).resolve().parents[2] / "generated"


def render(board: Dashboard) -> str:
    """``board`` as the committed JSON text."""
    return JSONEncoder(sort_keys=True, indent=2).encode(board) + "\n"


def rendered() -> dict[str, str]:
    """File name → JSON text of every dashboard.

    Raises:
        ValueError: two dashboards share a uid.
    """
    files: dict[str, str] = {}
    for build in BUILDERS:
        board = build()
        name = f"{board.uid}.json"
        if name in files:
            raise ValueError(f"two dashboards have the uid {board.uid!r}")
        files[name] = render(board)
    return files


def write(out_dir: Path) -> list[Path]:
    """Write every dashboard into ``out_dir`` (created if missing), and remove the
    ``mlobs-*.json`` files there that no builder makes any more (other files are left
    alone). Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = rendered()
    for stale in sorted(out_dir.glob("mlobs-*.json")):
        if stale.name not in files:
            stale.unlink()
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def differences(out_dir: Path) -> list[str]:
    """What differs between ``out_dir`` and what the code generates: one line per
    missing, changed or extra file (empty when they match)."""
    files = rendered()
    problems = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what the code generates")
    problems += [f"{path}: no builder generates it"
                 for path in sorted(out_dir.glob("mlobs-*.json")) if path.name not in files]
    return problems


def load(path: Path) -> dict:
    """A generated dashboard file as plain JSON."""
    return json.loads(path.read_text(encoding="utf-8"))
