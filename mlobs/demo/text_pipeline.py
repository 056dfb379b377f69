"""The demo's text processor: CPython's documentation topics read as transcripts.

Each entry of ``pydoc_data.topics.topics`` (the text behind ``help("with")``; ~79 real
documents shipped with CPython) is one "video": platform_id ``"pydoc"``, video_id the topic
key. Every document goes through five components::

    cleaning → chunking → embedding → key_sentences → summary (optional)

The pipeline steps are ordinary functions (``clean``, ``chunk``, ``split_sentences``,
``score_sentences``, ``summarize``); :func:`process_topic` wraps each in
``run.component(...)`` and is the only place that talks to mlobs.

Where the optional ``summary`` ends without a summary (these conditions come from the text,
nothing is injected):

* empty ``too_short``: the document has fewer than :data:`MIN_SUMMARY_SENTENCES` prose
  sentences, so there is nothing to condense (on CPython 3.11: await, callable-types,
  continue, else, if, numbers, pass).
* error (``SummaryError``, error_code ``not_prose``): the best-scoring key sentence, the
  document's centre, is code, a grammar rule or a table; a prose summary that skipped it
  would misrepresent the document, so the component fails rather than write one (on
  CPython 3.11: formatstrings, operator-summary, shifting, string-methods, typesmethods,
  typesseq-mutable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import mlobs
from mlobs.cache.codecs import Codec
from mlobs.demo.models import TEXT_MODEL_NAME, TextModel
from mlobs.demo.slowdown import slowed

PLATFORM_ID = "pydoc"
PIPELINE_VERSION = "1.0.0"
#: the components this pipeline records, in order.
COMPONENTS = ("cleaning", "chunking", "embedding", "key_sentences", "summary")
#: Every component is required except ``summary`` (best-effort).
PROFILE = mlobs.AnalysisProfile("pydoc-text-v1", optional={"summary"},
                                models={TEXT_MODEL_NAME})

#: Chunking: words per chunk and words shared by consecutive chunks.
CHUNK_WORDS = 120
CHUNK_OVERLAP_WORDS = 20
#: key_sentences keeps this many best-scoring sentences.
KEY_SENTENCES = 3
#: summary needs at least this many prose sentences in the document.
MIN_SUMMARY_SENTENCES = 4

CONFIG = {"chunk_words": CHUNK_WORDS, "chunk_overlap_words": CHUNK_OVERLAP_WORDS,
          "key_sentences": KEY_SENTENCES, "min_summary_sentences": MIN_SUMMARY_SENTENCES}
_VERSIONS = {"producer_version": "1.0", "schema_version": "1"}


# --------------------------------------------------------------------------- data shapes

@dataclass(frozen=True)
class Block:
    """A paragraph of a cleaned document: ``kind`` is ``"prose"`` or ``"code"``.

    ``code`` covers code examples, grammar productions, tables and attribute headers:
    anything that is not running English text.
    """

    kind: str
    text: str


@dataclass(frozen=True)
class CleanDocument:
    title: str
    blocks: tuple[Block, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)


@dataclass(frozen=True)
class Sentence:
    kind: str  # "prose" or "code", inherited from its block
    text: str


@dataclass(frozen=True)
class ScoredSentence:
    sentence: Sentence
    #: cosine similarity to the document's mean chunk embedding, in [-1, 1].
    score: float


class SummaryError(ValueError):
    """The document's key sentences contain no prose, so no summary can be written."""


# Teach mlobs's classifier this pipeline's own failure (else it would be ``internal``).
mlobs.register_error_code(SummaryError, "not_prose")


# --------------------------------------------------------------------------- pure steps

_UNDERLINE = re.compile(r"^([*=\-~^])\1{2,}\s*$")
_CODE_CHARS = set("()[]{}=<>#+-/%_@|")
_IDENTIFIER = re.compile(r"[\w.]*[._][\w.]*(\(.*\))?|\w+\(.*\)")


def _is_code_block(lines: list[str]) -> bool:
    """Heuristic: is this paragraph code/grammar/table rather than English prose?"""
    text = "\n".join(lines).strip()
    stripped = [ln.strip() for ln in lines]
    if "::=" in text or text.startswith(">>>") or stripped[0][:1] in {"+", "|"}:
        return True
    if len(stripped) == 1 and _IDENTIFIER.fullmatch(stripped[0]):
        return True  # a lone identifier such as "object.__dict__" or "class.mro()"
    indented = all(ln.startswith("   ") for ln in lines)
    if not indented:
        return False
    dense = sum(ch in _CODE_CHARS for ch in text) / max(1, len(text.replace(" ", "")))
    return dense > 0.15 or not text.endswith((".", ":", "?", "!", ";", ","))


def clean(raw: str) -> CleanDocument:
    """cleaning: split a pydoc topic into a title and prose/code paragraphs.

    Drops heading underlines and blank runs, unwraps prose paragraphs onto one line with
    single spaces, keeps code blocks verbatim (dedented).

    Args:
        raw: the topic text as shipped in ``pydoc_data.topics``.
    """
    lines = raw.replace("\r\n", "\n").split("\n")
    title = lines[0].strip() if lines else ""
    if len(lines) > 1 and _UNDERLINE.match(lines[1]):
        lines = lines[2:]
    blocks: list[Block] = []
    paragraph: list[str] = []

    def close() -> None:
        # a line followed by an underline is a section heading: keep it as prose
        body = [ln for ln in paragraph if not _UNDERLINE.match(ln)]
        paragraph.clear()
        if not body:
            return
        if _is_code_block(body):
            indent = min(len(ln) - len(ln.lstrip()) for ln in body)
            blocks.append(Block("code", "\n".join(ln[indent:].rstrip() for ln in body)))
        else:
            blocks.append(Block("prose", " ".join(" ".join(ln.split()) for ln in body)))

    for line in lines:
        if line.strip():
            paragraph.append(line.rstrip())
        else:
            close()
    close()
    return CleanDocument(title=title, blocks=tuple(blocks))


def chunk(doc: CleanDocument, words: int = CHUNK_WORDS,
          overlap: int = CHUNK_OVERLAP_WORDS) -> list[str]:
    """chunking: overlapping windows of ``words`` words over the title and all blocks.

    A document shorter than one window gives one chunk; an empty document gives none.
    """
    tokens = " ".join([doc.title, doc.text]).split()
    step = max(1, words - overlap)
    return [" ".join(tokens[i:i + words])
            for i in range(0, max(1, len(tokens) - overlap), step) if tokens[i:i + words]]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(*])")


def split_sentences(doc: CleanDocument) -> list[Sentence]:
    """Sentences of the prose blocks (split after . ! ? before a capital); each code block
    is one "sentence" of kind ``code``."""
    out: list[Sentence] = []
    for block in doc.blocks:
        if block.kind == "code":
            out.append(Sentence("code", block.text))
            continue
        out.extend(Sentence("prose", s) for s in _SENTENCE_END.split(block.text) if s.strip())
    return out


def score_sentences(model: TextModel, sentences: list[Sentence],
                    chunk_vectors: np.ndarray, k: int = KEY_SENTENCES) -> list[ScoredSentence]:
    """key_sentences: the ``k`` sentences closest (cosine) to the document's centre.

    The centre is the mean of the document's chunk embeddings; sentences are embedded with
    the same model. Ties keep document order. Returns best first.

    Args:
        chunk_vectors: shape (n_chunks, dim), as returned by ``model.embed``.
    """
    if not sentences or len(chunk_vectors) == 0:
        return []
    centre = chunk_vectors.mean(axis=0)
    norm = np.linalg.norm(centre)
    centre = centre / norm if norm > 0 else centre
    scores = model.embed([s.text for s in sentences]) @ centre
    order = np.argsort(-scores, kind="stable")[:k]
    return [ScoredSentence(sentences[i], float(scores[i])) for i in order]


def summarize(key: list[ScoredSentence], prose_sentences: int,
              min_sentences: int = MIN_SUMMARY_SENTENCES) -> str:
    """summary: the prose key sentences, joined in score order, led by the best one.

    Raises:
        mlobs.Empty: ``too_short``: fewer than ``min_sentences`` prose sentences.
        SummaryError: the best key sentence (the document's centre) is code, grammar or a
            table; a prose summary that skipped it would misrepresent the document.
    """
    if prose_sentences < min_sentences:
        raise mlobs.Empty("too_short")
    if not key or key[0].sentence.kind != "prose":
        first_line = key[0].sentence.text.splitlines()[0][:60] if key else ""
        raise SummaryError(f"the best key sentence is not prose: {first_line!r}")
    return " ".join(s.sentence.text for s in key if s.sentence.kind == "prose")


def load_topics() -> dict[str, str]:
    """The documents: ``{topic key: text}`` sorted by key, from the running CPython
    (79 topics on CPython 3.11)."""
    from pydoc_data.topics import topics
    return dict(sorted(topics.items()))


def corpus_chunks(topics: dict[str, str]) -> list[str]:
    """All chunks of all documents: what the embedding model is fitted on."""
    return [c for raw in topics.values() for c in chunk(clean(raw))]


# --------------------------------------------------------------------------- instrumented

@dataclass
class TextResult:
    """What one document produced; ``summary`` is None when that component was empty or
    failed (its record says which)."""

    topic: str
    run_id: str
    key_sentences: list[ScoredSentence]
    summary: str | None


def process_topic(topic: str, raw: str, model: TextModel, *, cache: bool | str = False,
                  codecs: Mapping[str, Codec] | None = None,
                  pipeline_version: str = PIPELINE_VERSION) -> TextResult:
    """Run the five text components over one document inside one mlobs run.

    With ``cache=True`` every component is cached by its idempotency key (``"bypass"``
    recomputes and stores new versions; the default ``False`` does not cache); each one's
    inputs are the upstream results it reads, so a changed upstream result is a miss
    downstream.

    Args:
        codecs: per component name, the codec of results that are not plain JSON.
        pipeline_version: the runs' pipeline_version (a drift check can select by it).

    Raises:
        whatever a required component raises (the run is then recorded as ``error``).
    """
    codecs = codecs or {}

    def cached(name: str, inputs: Any) -> dict[str, Any]:
        return {"cache": cache, "inputs": inputs, "codec": codecs.get(name), **_VERSIONS}

    with mlobs.run(platform_id=PLATFORM_ID, video_id=topic, profile=PROFILE,
                   pipeline_version=pipeline_version, config=CONFIG,
                   sampling_policy_version="1") as run:
        with run.component("cleaning", **cached("cleaning", {"raw": raw})) as c, \
                slowed("cleaning"):
            if not c.hit:
                doc = clean(raw)
                c.set_result(doc)
                c.set_items(len(doc.blocks))
                c.metric("code_blocks", sum(b.kind == "code" for b in doc.blocks))
                if not doc.blocks:
                    c.empty("no_text")
            doc = c.result

        with run.component("chunking", **cached("chunking", {"doc": doc})) as c, \
                slowed("chunking"):
            if not c.hit:
                c.set_result(chunk(doc))
                c.set_items(len(c.result))
                if not c.result:
                    c.empty("no_text")
            chunks = c.result

        with run.component("embedding", models=[model.ref], batch_size=len(chunks) or None,
                           **cached("embedding", {"chunks": chunks})) as c, \
                slowed("embedding"):
            if not c.hit:
                c.set_result(model.embed(chunks))
                c.set_items(len(chunks))
                c.metric("explained_variance", model.explained_variance)
            vectors = c.result

        sentences = split_sentences(doc)
        with run.component("key_sentences", models=[model.ref],
                           **cached("key_sentences", {"doc": doc, "vectors": vectors})) as c, \
                slowed("key_sentences"):
            if not c.hit:
                c.set_result(score_sentences(model, sentences, vectors))
                c.set_items(len(sentences))
                if c.result:
                    c.metric("top_score", c.result[0].score)
                else:
                    c.empty("no_sentences")
            key = c.result

        summary = None
        prose = sum(s.kind == "prose" for s in sentences)
        with run.component("summary", **cached("summary", {"key": key, "prose": prose})) as c, \
                slowed("summary"):
            if not c.hit:
                c.set_result(summarize(key, prose))
                c.set_items(len(c.result.split()))
            summary = c.result
    return TextResult(topic=topic, run_id=run.run_id, key_sentences=key, summary=summary)
