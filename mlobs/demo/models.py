"""The demo's models: fitted once per demo process, described by real ``ModelRef``s.

* ``tfidf-svd``: TF-IDF over words + TruncatedSVD to :data:`TEXT_DIMENSIONS` dimensions,
  fitted on every chunk of every pydoc topic (text embedding).
* ``digits-pca``: PCA to :data:`VISUAL_DIMENSIONS` components, fitted on the digits
  training split (visual features).
* ``digits-logreg``: multinomial LogisticRegression on those PCA features, same split.

All fits are deterministic (fixed ``random_state``, deterministic solvers), so the same
data and library versions give the same ``weights_digest``: the SHA-256 over the fitted
parameters (see :func:`weights_digest`). The ModelRef version is scikit-learn's version,
the library that defines what those parameters mean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from mlobs.core.canonical import canonical_json
from mlobs.core.records import ModelRef

RANDOM_STATE = 0
TEXT_DIMENSIONS = 64
VISUAL_DIMENSIONS = 24
#: Fraction of the digits data set used to fit the visual models; the rest is the "video"
#: footage the pipeline runs over.
TRAIN_FRACTION = 0.4
#: The ``ModelRef.name`` of each model (the rows of ``MODEL_LICENSES.md``).
TEXT_MODEL_NAME = "tfidf-svd"
PCA_MODEL_NAME = "digits-pca"
CLASSIFIER_MODEL_NAME = "digits-logreg"


def weights_digest(arrays: dict[str, np.ndarray], vocabulary: dict[str, int] | None = None
                   ) -> str:
    """``"sha256:<hex>"`` over fitted parameters.

    Each array is hashed by name (sorted), dtype, shape and its C-order little-endian bytes;
    the vocabulary (token → column) as canonical JSON. Equal parameters give equal digests
    across processes; any changed weight, shape or token changes the digest.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        h.update(canonical_json({"name": name, "dtype": arr.dtype.str, "shape": arr.shape}))
        h.update(arr.tobytes())
    if vocabulary is not None:
        h.update(canonical_json({k: int(v) for k, v in vocabulary.items()}))
    return "sha256:" + h.hexdigest()


def _ref(name: str, digest: str) -> ModelRef:
    return ModelRef(name=name, version=sklearn.__version__, weights_digest=digest,
                    runtime="inprocess", engine="sklearn", precision="fp64", device="cpu")


# --------------------------------------------------------------------------- text

@dataclass
class TextModel:
    """TF-IDF + TruncatedSVD; ``embed`` gives L2-normalised vectors (rows)."""

    vectorizer: TfidfVectorizer
    svd: TruncatedSVD
    ref: ModelRef

    @property
    def explained_variance(self) -> float:
        """Share of the TF-IDF variance the SVD keeps (0..1)."""
        return float(self.svd.explained_variance_ratio_.sum())

    def embed(self, texts: list[str]) -> np.ndarray:
        """Shape (len(texts), TEXT_DIMENSIONS), float64, unit rows (zero rows stay zero)."""
        if not texts:
            return np.zeros((0, self.svd.n_components))
        vectors = self.svd.transform(self.vectorizer.transform(texts))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)


def fit_text_model(chunks: list[str], dimensions: int = TEXT_DIMENSIONS) -> TextModel:
    """Fit ``tfidf-svd`` on ``chunks`` (all documents' chunks), reduced to ``dimensions``
    (another value gives other weights, hence another model_signature)."""
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2,
                                 token_pattern=r"(?u)\b[A-Za-z_][A-Za-z_0-9]+\b")
    tfidf = vectorizer.fit_transform(chunks)
    svd = TruncatedSVD(n_components=dimensions, random_state=RANDOM_STATE).fit(tfidf)
    digest = weights_digest({"idf": vectorizer.idf_, "svd.components": svd.components_},
                            vocabulary=vectorizer.vocabulary_)
    return TextModel(vectorizer=vectorizer, svd=svd, ref=_ref(TEXT_MODEL_NAME, digest))


# --------------------------------------------------------------------------- visual

@dataclass
class VisualModels:
    """The digits models and the split they were fitted on (indices into load_digits)."""

    pca: PCA
    classifier: LogisticRegression
    pca_ref: ModelRef
    classifier_ref: ModelRef
    train_index: np.ndarray
    test_index: np.ndarray


def digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified (train, test) index split of the digits, both sorted."""
    train, test = train_test_split(np.arange(len(labels)), train_size=TRAIN_FRACTION,
                                   random_state=RANDOM_STATE, stratify=labels)
    return np.sort(train), np.sort(test)


def fit_visual_models() -> VisualModels:
    """Fit ``digits-pca`` and ``digits-logreg`` on the training split of load_digits()."""
    digits = load_digits()
    train, test = digits_split(digits.target)
    x_train = digits.data[train] / 16.0  # the same normalisation as the frames component
    pca = PCA(n_components=VISUAL_DIMENSIONS, svd_solver="full").fit(x_train)
    classifier = LogisticRegression(max_iter=2000, random_state=RANDOM_STATE)
    classifier.fit(pca.transform(x_train), digits.target[train])
    pca_digest = weights_digest({"components": pca.components_, "mean": pca.mean_})
    clf_digest = weights_digest({"coef": classifier.coef_, "intercept": classifier.intercept_,
                                 "classes": classifier.classes_})
    return VisualModels(pca=pca, classifier=classifier,
                        pca_ref=_ref(PCA_MODEL_NAME, pca_digest),
                        classifier_ref=_ref(CLASSIFIER_MODEL_NAME, clf_digest),
                        train_index=train, test_index=test)
