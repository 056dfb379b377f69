"""The demo's visual processor: scikit-learn's bundled handwritten digits as footage.

``sklearn.datasets.load_digits()`` (1,797 real 8×8 greyscale scans, shipped with
scikit-learn) is split once: :data:`~mlobs.demo.models.TRAIN_FRACTION` fits the models, the
held-out rest is cut, in data set order, into "videos" of :data:`FRAMES_PER_VIDEO` frames
(platform_id ``"digits"``, video_id ``"clip-000"``, ...). Each video runs::

    frames ─┬─ features → digit_classifier      (one pool thread; features in batches
            │                                     chosen by mlobs.choose_batch_size)
            └─ frame_quality (optional)          (another pool thread)

``frames`` runs in the caller's thread via ``run.component``; the three visual modules are
``@mlobs.component``-decorated functions called from ``ThreadPoolExecutor`` workers, which
attach to the run because it is the only one open in the process.

``frame_quality`` looks for low-contrast frames (pixel standard deviation below
:data:`LOW_CONTRAST_STD`: faint or thin strokes). About half the clips have none, and the
component then ends ``empty`` with reason ``no_low_contrast_frames``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.datasets import load_digits

import mlobs
from mlobs.demo.models import CLASSIFIER_MODEL_NAME, PCA_MODEL_NAME, VisualModels
from mlobs.demo.slowdown import slowed

PLATFORM_ID = "digits"
PIPELINE_VERSION = "1.0.0"
#: the components this pipeline records, in order.
COMPONENTS = ("frames", "features", "digit_classifier", "frame_quality")
#: Every component is required except ``frame_quality`` (best-effort).
PROFILE = mlobs.AnalysisProfile("digits-visual-v1", optional={"frame_quality"},
                                models={PCA_MODEL_NAME, CLASSIFIER_MODEL_NAME})
FRAMES_PER_VIDEO = 40
#: A frame whose normalised pixel standard deviation is below this is low-contrast.
LOW_CONTRAST_STD = 0.32
#: Raw digits pixels are integers 0..16.
PIXEL_MAX = 16.0

#: The memory checklist of ``features``: per frame, the float64 input row and its PCA
#: output plus scikit-learn's centred copy (3 × 64 × 8 bytes, rounded up); no fixed cost.
FEATURES_COST = mlobs.MemoryCost(per_item_bytes=2048)
#: Frames per PCA batch at most; the chooser may pick less on a machine short of memory.
FEATURES_MAX_BATCH = 16

CONFIG = {"frames_per_video": FRAMES_PER_VIDEO, "low_contrast_std": LOW_CONTRAST_STD}
_VERSIONS = {"producer_version": "1.0", "schema_version": "1"}


@dataclass(frozen=True)
class DigitVideo:
    """One clip: raw frames (n, 8, 8) with values 0..16, their true labels (n,)."""

    video_id: str
    images: np.ndarray
    labels: np.ndarray


def load_videos(models: VisualModels, frames_per_video: int = FRAMES_PER_VIDEO
                ) -> list[DigitVideo]:
    """The held-out digits (those the models were not fitted on) cut into clips."""
    digits = load_digits()
    test = models.test_index
    clips = [test[i:i + frames_per_video] for i in range(0, len(test), frames_per_video)]
    return [DigitVideo(video_id=f"clip-{n:03d}", images=digits.images[index],
                       labels=digits.target[index]) for n, index in enumerate(clips)]


# --------------------------------------------------------------------------- pure steps

def normalise_frames(images: np.ndarray) -> np.ndarray:
    """frames: decode (n, 8, 8) 0..16 integer scans to (n, 64) float64 rows in [0, 1]."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / PIXEL_MAX


def low_contrast_frames(frames: np.ndarray, threshold: float = LOW_CONTRAST_STD) -> np.ndarray:
    """frame_quality: indices of frames whose RMS contrast (pixel std) is below threshold."""
    return np.flatnonzero(frames.std(axis=1) < threshold)


# --------------------------------------------------------------------------- instrumented

@dataclass
class VisualComponents:
    """The decorated visual modules, bound to the fitted models they declare."""

    features: Callable[[np.ndarray], np.ndarray]
    digit_classifier: Callable[[np.ndarray, np.ndarray], np.ndarray]
    frame_quality: Callable[[np.ndarray], np.ndarray | None]


def make_components(models: VisualModels) -> VisualComponents:
    """Decorate the visual modules with the ModelRefs of ``models`` (known after fitting)."""

    # Chosen once, before any video runs (model system rules §8); halved on OOM.
    batch = mlobs.choose_batch_size(FEATURES_COST, device="cpu",
                                    max_batch_size=FEATURES_MAX_BATCH)

    @mlobs.component("features", models=[models.pca_ref], batch_size=batch,
                     on_oom=mlobs.HalveBatch(min=1), **_VERSIONS)
    def features(frames: np.ndarray, batch_size: int = FEATURES_MAX_BATCH) -> np.ndarray:
        """PCA projection of each frame, ``batch_size`` frames at a time:
        (n, 64) → (n, VISUAL_DIMENSIONS)."""
        handle = mlobs.current()
        handle.set_items(len(frames))
        handle.metric("explained_variance", float(models.pca.explained_variance_ratio_.sum()))
        with slowed("features"):
            return np.concatenate([models.pca.transform(frames[i:i + batch_size])
                                   for i in range(0, len(frames), batch_size)])

    @mlobs.component("digit_classifier", models=[models.classifier_ref], **_VERSIONS)
    def digit_classifier(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Predicted digit per frame; records accuracy against the true labels."""
        with slowed("digit_classifier"):
            predicted = models.classifier.predict(feats)
        handle = mlobs.current()
        handle.set_items(len(feats))
        handle.metric("accuracy", float((predicted == labels).mean()))
        return predicted

    @mlobs.component("frame_quality", **_VERSIONS)
    def frame_quality(frames: np.ndarray) -> np.ndarray:
        """Indices of low-contrast frames; empty ``no_low_contrast_frames`` when none."""
        with slowed("frame_quality"):
            low = low_contrast_frames(frames)
        handle = mlobs.current()
        handle.set_items(len(frames))
        if len(low) == 0:
            raise mlobs.Empty("no_low_contrast_frames")
        handle.metric("low_contrast_frames", len(low))
        return low

    return VisualComponents(features, digit_classifier, frame_quality)


@dataclass
class VisualResult:
    video_id: str
    run_id: str
    predicted: np.ndarray
    #: None when frame_quality was empty or failed (its record says which).
    low_contrast: np.ndarray | None


def process_video(video: DigitVideo, components: VisualComponents,
                  pool: ThreadPoolExecutor, pipeline_version: str = PIPELINE_VERSION
                  ) -> VisualResult:
    """Run frames, then the visual modules in parallel on ``pool``, inside one mlobs run.

    Raises:
        whatever a required component raises (the run is then recorded as ``error``).
    """
    with mlobs.run(platform_id=PLATFORM_ID, video_id=video.video_id, profile=PROFILE,
                   pipeline_version=pipeline_version, config=CONFIG,
                   sampling_policy_version="1") as run:
        with run.component("frames", **_VERSIONS) as c, slowed("frames"):
            frames = normalise_frames(video.images)
            c.set_items(len(frames))
            c.metric("mean_intensity", float(frames.mean()))
            if len(frames) == 0:
                c.empty("no_frames")

        # Plain submits: the work carries the run's context into the pool's threads.
        classified = pool.submit(
            lambda: components.digit_classifier(components.features(frames), video.labels))
        quality = pool.submit(components.frame_quality, frames)
        predicted, low_contrast = classified.result(), quality.result()
    return VisualResult(video_id=video.video_id, run_id=run.run_id, predicted=predicted,
                        low_contrast=low_contrast)
