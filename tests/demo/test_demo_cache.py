"""The demo's cache: hits on a second run, a new model misses where it should, versions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

import mlobs  # noqa: E402
from mlobs.cache.store import ArtifactStore  # noqa: E402
from mlobs.cli.main import main  # noqa: E402
from mlobs.demo.runner import run_demo  # noqa: E402

VIDEOS = 6


@pytest.fixture(autouse=True)
def _fresh_mlobs(monkeypatch: pytest.MonkeyPatch):
    for name in ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_SINKS", "MLOBS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    yield
    mlobs.configure(sinks=[])


def text_manifests(root: Path) -> list[dict]:
    """Every text run's manifest, oldest first."""
    docs = [json.loads(p.read_text())
            for p in (root / "runs" / "pydoc").glob("*/*/manifest.json")]
    return sorted(docs, key=lambda d: d["started_at"])


def outcomes(root: Path, since: str) -> Counter:
    """(component, cache_status, cache_miss_reason) counts of the runs started after since."""
    return Counter((c["component"], c["cache_status"], c["cache_miss_reason"])
                   for d in text_manifests(root) if d["started_at"] > since
                   for c in d["components"])


def last_start(root: Path) -> str:
    return text_manifests(root)[-1]["started_at"]


def quiet(**kwargs):
    return run_demo(max_videos=VIDEOS, progress=lambda line: None, sinks=["manifest"],
                    **kwargs)


def test_second_run_hits_and_a_new_model_misses_only_where_it_is_used(tmp_path):
    quiet(root=tmp_path)
    mark = last_start(tmp_path)
    quiet(root=tmp_path)
    second = outcomes(tmp_path, mark)
    errors = sum(n for (name, status, _), n in second.items()
                 if name == "summary" and status == "miss")  # errors are never cached
    assert {(name, status) for name, status, _ in second} <= {
        (n, "hit") for n in ("cleaning", "chunking", "embedding", "key_sentences",
                             "summary")} | {("summary", "miss")}
    assert sum(n for (_, status, _), n in second.items() if status == "hit") == \
        5 * VIDEOS - errors

    mark = last_start(tmp_path)
    quiet(root=tmp_path, embedding_dimensions=48)
    third = outcomes(tmp_path, mark)
    assert third[("cleaning", "hit", None)] == third[("chunking", "hit", None)] == VIDEOS
    assert third[("embedding", "miss", "model_signature_changed")] == VIDEOS
    # key_sentences declares the embedding model too: its own key changed
    assert third[("key_sentences", "miss", "model_signature_changed")] == VIDEOS
    assert third[("summary", "miss", "input_changed")] == VIDEOS - errors


def test_no_cache_stores_new_versions_and_switching_back_changes_what_is_loaded(tmp_path):
    quiet(root=tmp_path)
    quiet(root=tmp_path, cache="bypass")
    store = ArtifactStore(tmp_path / "cache")
    video = text_manifests(tmp_path)[0]["video_id"]
    assert [e.version for e in store.info("pydoc", video).versions("cleaning")] == [1, 2]

    assert main(["cache", "use", "--root", str(tmp_path), "--platform-id", "pydoc",
                 "--video-id", video, "cleaning", "1"]) == 0
    mark = last_start(tmp_path)
    quiet(root=tmp_path)
    [loaded] = [c for d in text_manifests(tmp_path)
                if d["started_at"] > mark and d["video_id"] == video
                for c in d["components"] if c["component"] == "cleaning"]
    assert (loaded["cache_status"], loaded["cache_version"]) == ("hit", 1)
