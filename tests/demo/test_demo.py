"""The demo: what a user running ``mlobs demo`` (or copying its pipelines) relies on."""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import mlobs  # noqa: E402
from mlobs.cli import demo as demo_cli  # noqa: E402
from mlobs.demo import models, text_pipeline, visual_pipeline  # noqa: E402
from mlobs.demo.runner import run_demo  # noqa: E402
from mlobs.testing import capture  # noqa: E402

TEXT_REQUIRED = ("cleaning", "chunking", "embedding", "key_sentences")
VISUAL_REQUIRED = ("frames", "features", "digit_classifier")


@pytest.fixture(autouse=True)
def _fresh_mlobs(monkeypatch: pytest.MonkeyPatch):
    """Each test configures mlobs itself; afterwards mlobs records nowhere (no sinks), so
    nothing later in the session writes into this test's directories."""
    for name in ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_SINKS", "MLOBS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    yield
    mlobs.configure(sinks=[])


@pytest.fixture(scope="module")
def text_model() -> models.TextModel:
    return models.fit_text_model(text_pipeline.corpus_chunks(text_pipeline.load_topics()))


@pytest.fixture(scope="module")
def visual_models() -> models.VisualModels:
    return models.fit_visual_models()


def _manifests(runs_dir: Path) -> dict[str, dict]:
    found = {}
    for path in runs_dir.glob("*/*/*/manifest.json"):
        manifest = json.loads(path.read_text())
        found[manifest["run_id"]] = manifest
    return found


def _components(manifest: dict) -> dict[str, dict]:
    return {c["component"]: c for c in manifest["components"]}


# --------------------------------------------------------------------------- whole demo

def test_demo_writes_one_manifest_per_run_with_every_component(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run_demo(tmp_path, max_videos=3, progress=lines.append, sinks=["manifest"])

    assert (summary.runs, summary.ok_runs, summary.error_runs) == (6, 6, 0)
    assert summary.manifests_dir == tmp_path.resolve() / "runs"
    assert summary.warehouse_url is None
    manifests = _manifests(summary.manifests_dir)
    assert set(manifests) == set(summary.run_ids)
    by_platform = {p: [m for m in manifests.values() if m["platform_id"] == p]
                   for p in ("pydoc", "digits")}
    assert len(by_platform["pydoc"]) == len(by_platform["digits"]) == 3
    for manifest in by_platform["pydoc"]:
        components = _components(manifest)
        assert manifest["status"] == "ok"
        assert set(components) == {*TEXT_REQUIRED, "summary"}
        assert all(components[name]["status"] == "ok" for name in TEXT_REQUIRED)
        assert components["summary"]["required"] is False
    for manifest in by_platform["digits"]:
        # features/digit_classifier/frame_quality ran on pool threads: same run, same manifest
        components = _components(manifest)
        assert manifest["status"] == "ok"
        assert set(components) == {*VISUAL_REQUIRED, "frame_quality"}
        assert all(components[name]["status"] == "ok" for name in VISUAL_REQUIRED)
        assert components["frame_quality"]["status"] in ("ok", "empty")
        assert 0.7 <= components["digit_classifier"]["metrics"]["accuracy"] <= 1.0
        assert manifest["resolved_models"]["digit_classifier"] == [
            f"digits-logreg:{sklearn.__version__}"]
    assert any("text (pydoc topics): 3/3 videos" in line for line in lines)
    assert any("visual (digits clips): 3/3 videos" in line for line in lines)


def test_demo_fills_the_warehouse_that_the_rollup_reads(tmp_path: Path) -> None:
    from mlobs.analysis.rollup import compute_rollup

    summary = run_demo(tmp_path, max_videos=2, progress=lambda line: None)

    assert summary.warehouse_url == f"sqlite:///{(tmp_path / 'warehouse.db').resolve()}"
    rows = {r.component: r for r in compute_rollup(summary.warehouse_url)}
    assert set(rows) == {*TEXT_REQUIRED, "summary", *VISUAL_REQUIRED, "frame_quality"}
    assert rows["embedding"].invocations == 2 and rows["embedding"].error_rate == 0


def test_cli_demo_reports_where_the_records_are(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLOBS_SINKS", "manifest")
    parser = argparse.ArgumentParser(prog="mlobs")
    demo_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "--root", str(tmp_path), "--max-videos", "1",
                              "--quiet"])

    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"manifests: {tmp_path.resolve() / 'runs'}" in out
    assert "2 runs" in out and "fitting models" not in out  # --quiet: no progress
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--max-videos", "0"])


def test_the_demos_rollup_names_the_models(demo_warehouse_db: Path) -> None:
    summary = SimpleNamespace(warehouse_url=f"sqlite:///{demo_warehouse_db}")
    lines = demo_cli.rollup_report(summary).splitlines()
    column = lines[0].index("model")
    models = {line[column:].split()[0] for line in lines[2:]}
    # e.g. tfidf-svd@796fa9ab: the model's name and the signature's first 8 characters
    assert models and all(re.fullmatch(r"[\w./+-]+@[0-9a-f]{8}|-", m) for m in models)
    assert any("@" in m for m in models)


# --------------------------------------------------------------------------- text

@pytest.mark.parametrize("topic, status, reason", [
    ("with", "ok", None),                      # a real summary
    ("await", "empty", "too_short"),           # 3 prose sentences
    ("pass", "empty", "too_short"),
    ("operator-summary", "error", "not_prose"),  # its centre is the precedence table
    ("shifting", "error", "not_prose"),          # its centre is the grammar rule
])
def test_optional_summary_ends_empty_or_error_and_the_run_stays_ok(
        text_model: models.TextModel, topic: str, status: str, reason: str | None) -> None:
    raw = text_pipeline.load_topics()[topic]
    with capture() as records:
        result = text_pipeline.process_topic(topic, raw, text_model)

    run = records.run()
    summary = records.component("summary")
    assert run.status == "ok" and run.video_id == topic
    assert all(records.component(name).status == "ok" for name in TEXT_REQUIRED)
    assert (summary.status, summary.required) == (status, False)
    assert (summary.error_code if status == "error" else summary.empty_reason) == reason
    if status == "error":
        assert summary.error_type == "SummaryError"
        assert any("summary" in warning for warning in run.warnings)
    assert (result.summary is not None) == (status == "ok")
    assert len(result.key_sentences) == text_pipeline.KEY_SENTENCES


def test_text_components_record_the_model_with_its_digest(text_model) -> None:
    with capture() as records:
        text_pipeline.process_topic("if", text_pipeline.load_topics()["if"], text_model)

    embedding = records.component("embedding")
    assert embedding.models_used == [text_model.ref]
    assert embedding.model_signature == mlobs.model_signature([text_model.ref])
    assert embedding.items == embedding.batch_size == 1
    assert 0 < embedding.metrics["explained_variance"] < 1


def test_cleaning_separates_prose_from_code() -> None:
    doc = text_pipeline.clean(text_pipeline.load_topics()["pass"])

    assert doc.title == 'The "pass" statement'
    kinds = [b.kind for b in doc.blocks]
    assert kinds[0] == "code" and doc.blocks[0].text == 'pass_stmt ::= "pass"'
    assert "prose" in kinds
    assert not any("\n" in b.text for b in doc.blocks if b.kind == "prose")


def test_chunks_overlap_and_cover_the_document() -> None:
    doc = text_pipeline.CleanDocument("T", (text_pipeline.Block("prose", " ".join(
        f"w{i}" for i in range(250))),))
    chunks = text_pipeline.chunk(doc, words=100, overlap=20)

    assert [len(c.split()) for c in chunks] == [100, 100, 91]
    assert chunks[0].split()[-20:] == chunks[1].split()[:20]
    assert chunks[-1].split()[-1] == "w249"
    assert text_pipeline.chunk(text_pipeline.CleanDocument("", ())) == []


# --------------------------------------------------------------------------- visual

def test_frame_quality_is_empty_without_low_contrast_frames(visual_models) -> None:
    videos = visual_pipeline.load_videos(visual_models)
    lows = [len(visual_pipeline.low_contrast_frames(visual_pipeline.normalise_frames(v.images)))
            for v in videos]
    clean_clip, faint_clip = videos[lows.index(0)], videos[next(i for i, n in enumerate(lows)
                                                                 if n > 0)]
    components = visual_pipeline.make_components(visual_models)
    with capture() as records, ThreadPoolExecutor(max_workers=2) as pool:
        clean_result = visual_pipeline.process_video(clean_clip, components, pool)
        faint_result = visual_pipeline.process_video(faint_clip, components, pool)

    quality = {c.run_id: c for c in records.components if c.component == "frame_quality"}
    assert quality[clean_result.run_id].status == "empty"
    assert quality[clean_result.run_id].empty_reason == "no_low_contrast_frames"
    assert clean_result.low_contrast is None
    assert quality[faint_result.run_id].status == "ok"
    assert quality[faint_result.run_id].metrics["low_contrast_frames"] == len(
        faint_result.low_contrast) > 0
    assert all(r.status == "ok" for r in records.runs)


def test_digits_clips_are_the_held_out_images(visual_models) -> None:
    videos = visual_pipeline.load_videos(visual_models)

    assert not set(visual_models.train_index) & set(visual_models.test_index)
    assert sum(len(v.images) for v in videos) == len(visual_models.test_index)
    assert all(len(v.images) == visual_pipeline.FRAMES_PER_VIDEO for v in videos[:-1])
    assert len({v.video_id for v in videos}) == len(videos)


# --------------------------------------------------------------------------- models

def test_weights_digests_are_stable_across_fittings(text_model, visual_models) -> None:
    chunks = text_pipeline.corpus_chunks(text_pipeline.load_topics())
    again_text, again_visual = models.fit_text_model(chunks), models.fit_visual_models()

    assert again_text.ref == text_model.ref
    assert again_visual.pca_ref == visual_models.pca_ref
    assert again_visual.classifier_ref == visual_models.classifier_ref
    digests = {text_model.ref.weights_digest, visual_models.pca_ref.weights_digest,
               visual_models.classifier_ref.weights_digest}
    assert len(digests) == 3
    assert all(d.startswith("sha256:") and len(d) == 7 + 64 for d in digests)
    for ref in (text_model.ref, visual_models.pca_ref, visual_models.classifier_ref):
        assert (ref.engine, ref.precision, ref.device) == ("sklearn", "fp64", "cpu")


def test_weights_digest_changes_with_any_weight_or_token() -> None:
    weights = {"coef": np.arange(6, dtype=np.float64).reshape(2, 3)}
    base = models.weights_digest(weights, vocabulary={"a": 0, "b": 1})
    nudged = {"coef": weights["coef"].copy()}
    nudged["coef"][1, 2] += 1e-12

    assert base == models.weights_digest({"coef": weights["coef"].copy()}, {"b": 1, "a": 0})
    assert base != models.weights_digest(nudged, vocabulary={"a": 0, "b": 1})
    assert base != models.weights_digest(weights, vocabulary={"a": 0, "c": 1})
    assert base != models.weights_digest({"coef": weights["coef"].reshape(3, 2)},
                                         vocabulary={"a": 0, "b": 1})
