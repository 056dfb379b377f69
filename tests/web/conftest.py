"""Shared fixtures of the admin views' tests: a root the demo filled (12 runs, several
cache versions, stored rollups) and the real ``mlobs ui`` server over it.

* ``ui_root`` (session): :class:`UiRoot` with ``root`` and ``db_url``.
* ``ui_server`` (session): the base URL ``http://127.0.0.1:PORT`` of ``mlobs ui`` serving
  ``ui_root``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mlobs
from support.web_server import ui_server_process

#: environment variables that would send the demo's records elsewhere or turn them off.
MLOBS_ENV = ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_SINKS", "MLOBS_DISABLED")
#: videos per pipeline and demo: 3 x 2 pipelines x 2 demos = 12 runs.
DEMO_VIDEOS = 3


@dataclass(frozen=True)
class UiRoot:
    """An mlobs root the demo filled: ``root/warehouse.db`` and ``root/cache``."""

    root: Path
    db_url: str


def fill_ui_root(root: Path) -> UiRoot:
    """Run the demo twice into ``root`` (the second time as pipeline 1.1.0 bypassing the
    cache, so every text component has two cache versions) and store the ``all`` and
    ``hour`` rollups (the components pages read stored rollups) and the drift checks of
    1.0.0 against 1.1.0."""
    from mlobs.analysis.drift import DriftPolicy, Window, check_drift
    from mlobs.analysis.rollup import compute_rollup
    from mlobs.analysis.rollup_store import write_rollup
    from mlobs.demo.runner import run_demo

    with pytest.MonkeyPatch.context() as patch:
        for name in MLOBS_ENV:
            patch.delenv(name, raising=False)
        try:
            run_demo(root, max_videos=DEMO_VIDEOS, progress=lambda line: None)
            run_demo(root, max_videos=DEMO_VIDEOS, progress=lambda line: None,
                     pipeline_version="1.1.0", cache="bypass")
        finally:
            mlobs.configure(sinks=[])  # later tests must not write into this root
    db_url = f"sqlite:///{root / 'warehouse.db'}"
    for bucket in ("all", "hour"):
        write_rollup(db_url, compute_rollup(db_url, bucket=bucket), bucket)
    check_drift(db_url, Window(pipeline_version="1.0.0"), Window(pipeline_version="1.1.0"),
                policy=DriftPolicy(min_samples=3))  # the quality pages' rows
    return UiRoot(root=root, db_url=db_url)


@pytest.fixture(scope="session")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> UiRoot:
    """A root the demo filled, shared by the session (tests that change it, like making
    a cache version current, must leave the rest usable)."""
    return fill_ui_root(tmp_path_factory.mktemp("ui-root"))


@pytest.fixture(scope="session")
def ui_server(ui_root: UiRoot) -> Iterator[str]:
    """The base URL of ``mlobs ui`` serving ``ui_root``, without ``MLOBS_*`` settings."""
    with ui_server_process(ui_root.db_url, ui_root.root) as base_url:
        yield base_url
