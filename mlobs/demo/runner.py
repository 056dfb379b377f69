"""Run the whole demo: fit the models, run both pipelines over all their "videos".

``run_demo`` is what ``mlobs demo`` and ``make demo`` call. It needs no network: the text
comes with CPython (``pydoc_data``), the images with scikit-learn (``load_digits``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import mlobs
from mlobs.demo import text_pipeline, visual_pipeline
from mlobs.demo.codecs import TEXT_CODECS
from mlobs.demo.models import TEXT_DIMENSIONS, fit_text_model, fit_visual_models
from mlobs.demo.slowdown import set_slowdowns

#: A progress line is printed after every this many videos (and after the last one).
PROGRESS_EVERY = 10


@dataclass
class DemoSummary:
    """What ``run_demo`` did. ``ok_runs + error_runs == runs``."""

    runs: int
    ok_runs: int
    error_runs: int
    #: runs whose optional component ended ``error`` or ``empty`` (the run itself is ok).
    partial_runs: int
    manifests_dir: Path
    warehouse_url: str | None
    duration_s: float
    run_ids: list[str] = field(default_factory=list)


class _Tally:
    """Counts runs of one pipeline and prints a progress line every few videos."""

    def __init__(self, name: str, total: int, started: float,
                 progress: Callable[[str], None]) -> None:
        self.name, self.total, self.started, self.progress = name, total, started, progress
        self.done = self.ok = self.errors = self.partial = 0
        self.run_ids: list[str] = []

    def record(self, run_id: str | None, partial: bool = False) -> None:
        self.done += 1
        if run_id is None:
            self.errors += 1
        else:
            self.ok += 1
            self.partial += partial
            self.run_ids.append(run_id)
        if self.done % PROGRESS_EVERY == 0 or self.done == self.total:
            self.progress(f"{self.name}: {self.done}/{self.total} videos "
                          f"({self.errors} failed), {time.monotonic() - self.started:.1f} s")


def _limit(items: Iterable, max_videos: int | None) -> list:
    items = list(items)
    return items if max_videos is None else items[:max_videos]


def run_demo(root: Path | None = None, max_videos: int | None = None,
             progress: Callable[[str], None] = print,
             sinks: list[str] | None = None, cache: bool | str = True,
             embedding_dimensions: int | None = None,
             slow: Mapping[str, float] | None = None,
             pipeline_version: str | None = None) -> DemoSummary:
    """Configure mlobs under ``root`` and run both demo pipelines.

    Args:
        root: directory for manifests and the SQLite warehouse; None: mlobs's default
            (``$MLOBS_ROOT`` or ``./mlobs-data``).
        max_videos: at most this many videos per pipeline (None: every pydoc topic, 79 on
            CPython 3.11, and all 27 digits clips).
        progress: called with one human-readable line at a time.
        sinks: mlobs sinks to enable (None: mlobs's default, manifest + warehouse).
        cache: the text components' cache mode: ``True`` (reuse results cached under
            ``<root>/cache``), ``"bypass"`` (recompute and store new versions), ``False``.
        embedding_dimensions: dimensions of the ``tfidf-svd`` embedding model (None: 64);
            another value is another model (a ``model_signature_changed`` cache miss).
        slow: component name → factor (>= 1): those components take that many times as
            long (:mod:`mlobs.demo.slowdown`), e.g. to see ``mlobs drift`` find them.
        pipeline_version: the runs' pipeline_version (default: the pipelines' own,
            ``1.0.0``), so two demos can be told apart by a drift check.

    Raises:
        ConfigError: ``slow`` names an unknown component or a factor below 1.

    A failed run (a required component raised) is counted and the demo goes on.
    Takes about a second or two for everything on one core.
    """
    set_slowdowns(slow or {}, set(text_pipeline.COMPONENTS) | set(visual_pipeline.COMPONENTS))
    started = time.monotonic()
    settings = mlobs.configure(root=root, sinks=sinks)
    warehouse_on = "warehouse" in settings.sinks
    if warehouse_on:
        # migrations are explicit (ARCHITECTURE §6): bring the schema to head before any
        # run (the warehouse sink connects at its first batch)
        from mlobs.warehouse.migrate import upgrade
        upgrade(settings.db_url)
    progress("fitting models (scikit-learn) ...")

    topics = text_pipeline.load_topics()
    text_model = fit_text_model(text_pipeline.corpus_chunks(topics),
                                embedding_dimensions or TEXT_DIMENSIONS)
    visual_models = fit_visual_models()
    progress(f"models fitted in {time.monotonic() - started:.1f} s: "
             f"{text_model.ref.name}, {visual_models.pca_ref.name}, "
             f"{visual_models.classifier_ref.name}")

    documents = _limit(topics.items(), max_videos)
    text = _Tally("text (pydoc topics)", len(documents), started, progress)
    for topic, raw in documents:
        try:
            result = text_pipeline.process_topic(
                topic, raw, text_model, cache=cache, codecs=TEXT_CODECS,
                pipeline_version=pipeline_version or text_pipeline.PIPELINE_VERSION)
        except Exception as exc:  # a required component failed: the run says why
            progress(f"run failed: {text_pipeline.PLATFORM_ID}/{topic}: {exc!r}")
            text.record(None)
        else:
            text.record(result.run_id, partial=result.summary is None)

    videos = _limit(visual_pipeline.load_videos(visual_models), max_videos)
    visual = _Tally("visual (digits clips)", len(videos), started, progress)
    components = visual_pipeline.make_components(visual_models)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlobs-demo") as pool:
        for video in videos:
            try:
                result = visual_pipeline.process_video(
                    video, components, pool,
                    pipeline_version or visual_pipeline.PIPELINE_VERSION)
            except Exception as exc:
                progress(f"run failed: {visual_pipeline.PLATFORM_ID}/{video.video_id}: "
                         f"{exc!r}")
                visual.record(None)
            else:
                visual.record(result.run_id, partial=result.low_contrast is None)

    if mlobs.flush(timeout_s=30) is False:
        progress("warning: mlobs sinks did not finish writing within 30 s")
    tallies = (text, visual)
    return DemoSummary(
        runs=sum(t.done for t in tallies), ok_runs=sum(t.ok for t in tallies),
        error_runs=sum(t.errors for t in tallies), partial_runs=sum(t.partial for t in tallies),
        manifests_dir=settings.runs_dir,
        warehouse_url=settings.db_url if warehouse_on else None,
        duration_s=time.monotonic() - started,
        run_ids=[r for t in tallies for r in t.run_ids])
