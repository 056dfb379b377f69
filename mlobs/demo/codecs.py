"""Codecs for the demo's cached results: plugging a user codec into ``cache=True``.

Each stores JSON (never pickle) and rebuilds the demo's own types on load.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlobs.demo.text_pipeline import Block, CleanDocument, ScoredSentence, Sentence


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


class DocumentCodec:
    """``CleanDocument`` ↔ ``{"title": ..., "blocks": [[kind, text], ...]}``."""

    name = "demo.document"

    def encode(self, doc: CleanDocument) -> bytes:
        return _dumps({"title": doc.title, "blocks": [[b.kind, b.text] for b in doc.blocks]})

    def decode(self, data: bytes) -> CleanDocument:
        value = json.loads(data)
        return CleanDocument(value["title"], tuple(Block(k, t) for k, t in value["blocks"]))


class ArrayCodec:
    """A float64 array ↔ ``{"shape": [...], "values": [...]}`` (exact: JSON floats
    round-trip float64)."""

    name = "demo.array"

    def encode(self, array: np.ndarray) -> bytes:
        return _dumps({"shape": list(array.shape), "values": array.ravel().tolist()})

    def decode(self, data: bytes) -> np.ndarray:
        value = json.loads(data)
        return np.asarray(value["values"], dtype=np.float64).reshape(value["shape"])


class ScoredSentencesCodec:
    """``list[ScoredSentence]`` ↔ ``[[kind, text, score], ...]``."""

    name = "demo.scored_sentences"

    def encode(self, scored: list[ScoredSentence]) -> bytes:
        return _dumps([[s.sentence.kind, s.sentence.text, s.score] for s in scored])

    def decode(self, data: bytes) -> list[ScoredSentence]:
        return [ScoredSentence(Sentence(kind, text), score)
                for kind, text, score in json.loads(data)]


#: the codec of each cached text component whose result is not plain JSON.
TEXT_CODECS = {"cleaning": DocumentCodec(), "embedding": ArrayCodec(),
               "key_sentences": ScoredSentencesCodec()}
