"""A warehouse the demo filled, and the model names it recorded (read with plain sqlite3,
not the code under test)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import mlobs


def fill_with_demo(root: Path) -> Path:
    """Run two videos of the demo into ``root``; returns its SQLite warehouse file."""
    from mlobs.demo.runner import run_demo

    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_SINKS", "MLOBS_DISABLED"):
            patch.delenv(name, raising=False)
        try:
            run_demo(root, max_videos=2, progress=lambda line: None)
        finally:
            mlobs.configure(sinks=[])
    return root / "warehouse.db"


def recorded_models(db_path: Path) -> set[str]:
    """The model names of ``model_signatures``."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT models FROM model_signatures").fetchall()
    return {entry["model_name"] for (models,) in rows for entry in json.loads(models)}
