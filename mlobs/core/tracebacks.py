"""A failed component's traceback as bounded, safe text (``error_traceback``).

What a reader of a failure needs first is where *their* code was: the frames of the
pipeline's own files. A traceback through a library (torch, transformers) can be hundreds
of frames deep, so frames are kept in this order of priority until ``max_frames``:

* the frame that raised;
* the frames of the user's code (any file outside the standard library, the installed
  packages and mlobs itself), innermost first;
* then library frames, innermost first.

mlobs's own frames (its wrappers around the component) are always dropped: they are the
same in every traceback. Each other gap is one line (``... 12 frames omitted``). Chained
exceptions (``raise ... from``, an error while handling another) are kept, as Python
prints them, up to ``MAX_CHAIN``. The text is then made safe: control characters other
than newline and tab become ``\\ufffd`` (a terminal showing it runs no escape
sequence), lone surrogates are escaped, and when it is longer than ``max_chars`` its
start is cut (the exception's own line is at the end), marked by a first line saying so.
Never raises: a traceback that cannot be formatted gives a one-line note instead.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from pathlib import Path

from mlobs.core.limits import TRACEBACK_MAX_CHARS
from mlobs.core.text import storable

#: Most frames kept per exception of the chain.
MAX_FRAMES = 30
#: Most characters of the whole text.
MAX_CHARS = TRACEBACK_MAX_CHARS
#: Most exceptions of a chain (``__cause__`` / ``__context__``) that are formatted.
MAX_CHAIN = 5

_MLOBS_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _library_dirs() -> tuple[str, ...]:
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(str(Path(path).resolve()) + os.sep)
    return tuple(sorted(dirs))


_LIBRARY_DIRS = _library_dirs()


def _origin(filename: str) -> str:
    """``"mlobs"``, ``"library"`` or ``"user"`` for a frame's file."""
    if filename.startswith(_MLOBS_DIR):
        return "mlobs"
    if (filename.startswith(_LIBRARY_DIRS) or filename.startswith("<frozen ")
            or f"{os.sep}site-packages{os.sep}" in filename
            or f"{os.sep}dist-packages{os.sep}" in filename):
        return "library"
    return "user"


def _chosen(frames: list[traceback.FrameSummary], max_frames: int) -> list[int]:
    """Indices of the frames to keep, in their order: the frame that raised, then the
    user's frames, then library frames, each innermost first, up to ``max_frames``."""
    origins = [_origin(frame.filename) for frame in frames]
    ranked = [len(frames) - 1] if frames else []
    for wanted in ("user", "library"):
        ranked += [i for i in reversed(range(len(frames))) if origins[i] == wanted]
    keep: list[int] = []
    for i in ranked:
        if len(keep) == max_frames:
            break
        if i not in keep:
            keep.append(i)
    return sorted(keep)


class _Gap:
    """Frames left out, shown as one line."""

    def __init__(self, count: int) -> None:
        self.line = f"  ... {count} frame{'' if count == 1 else 's'} omitted\n"


class _Stack(traceback.StackSummary):
    """A stack with gaps; ``TracebackException.format`` calls its ``format``."""

    def format(self, **options: object) -> list[str]:
        # options: what this Python's TracebackException passes on (3.13: colorize).
        lines: list[str] = []
        run: list[traceback.FrameSummary] = []
        for item in self:
            if isinstance(item, _Gap):
                lines.extend(traceback.StackSummary.from_list(run).format(**options))
                run = []
                lines.append(item.line)
            else:
                run.append(item)
        lines.extend(traceback.StackSummary.from_list(run).format(**options))
        return lines


def _trimmed(stack: traceback.StackSummary, max_frames: int) -> _Stack:
    frames = list(stack)
    out = _Stack()
    previous = -1
    for i in [*_chosen(frames, max_frames), len(frames)]:
        # mlobs's own frames leave no gap line: they are the same in every traceback.
        skipped = [f for f in frames[previous + 1:i] if _origin(f.filename) != "mlobs"]
        if skipped:
            out.append(_Gap(len(skipped)))
        if i < len(frames):
            out.append(frames[i])
        previous = i
    return out


def _trim_chain(exc: traceback.TracebackException, max_frames: int) -> None:
    seen = 0
    node: traceback.TracebackException | None = exc
    while node is not None:
        seen += 1
        node.stack = _trimmed(node.stack, max_frames)
        nxt = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
        if nxt is not None and seen >= MAX_CHAIN:
            node.__cause__ = node.__context__ = None
            nxt = None
        node = nxt


def safe_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """``text`` without control characters (newline and tab kept) and storable
    (:func:`mlobs.core.text.storable`: lone surrogates escaped), its start cut to fit
    ``max_chars`` (the cut is said in a first line)."""
    text = storable(_UNSAFE.sub("\ufffd", text))
    if len(text) <= max_chars:
        return text
    marker = "[... {} characters omitted ...]\n"
    keep = max_chars - len(marker.format(len(text)))
    return marker.format(len(text) - keep) + text[-keep:]


def format_traceback(exc: BaseException, *, max_frames: int = MAX_FRAMES,
                     max_chars: int = MAX_CHARS) -> str | None:
    """``exc``'s traceback as Python prints it, trimmed as the module docstring says.

    Args:
        exc: the exception a component raised (its ``__traceback__`` is read).
        max_frames: most frames per exception of the chain (at least 1).
        max_chars: most characters of the result.

    Returns:
        The text, or None when ``exc`` carries no traceback (never raised).
    """
    if exc.__traceback__ is None:
        return None
    try:
        summary = traceback.TracebackException.from_exception(exc, limit=None)
        _trim_chain(summary, max(1, max_frames))
        text = "".join(summary.format())
    except Exception as problem:  # a broken __str__, a recursion: keep a note, not nothing
        text = (f"(the traceback of {type(exc).__name__} could not be formatted: "
                f"{type(problem).__name__})\n")
    return safe_text(text, max_chars)
