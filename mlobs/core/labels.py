"""Run labels: string pairs that select run sets, ``mlobs.run(..., labels={...})``.

A release gate picks its candidate and baseline runs by label, and the views filter by
them (ARCHITECTURE §10): ``labels={"experiment": "asr-int8", "release": "rc-2"}``.

Rules (bounds in :mod:`mlobs.core.limits`, the sizes of table ``run_labels``):

* at most :data:`~mlobs.core.limits.LABELS_MAX` (32) labels per run;
* a key matches :data:`KEY_PATTERN`, ``[A-Za-z][A-Za-z0-9_.-]{0,63}``: a letter, then at
  most 63 letters, digits, ``_``, ``.`` or ``-``;
* a value is a ``str`` of at most 256 characters (empty allowed) of valid Unicode text
  without NUL, like every text mlobs stores (:mod:`mlobs.core.text`).

Labels also come from the environment variable ``MLOBS_RUN_LABELS``
(``key=value,key=value``), so that a CI driver (``mlobs gate run``) can label the runs of
commands it does not control; on the same key, the labels given to ``mlobs.run`` win.

Public, for the CLI and CI drivers too: :func:`check_labels`, :func:`parse_labels` (the
text form, also of ``--label KEY=VALUE`` arguments), :func:`labels_from_env` and
:func:`run_labels` (what ``mlobs.run`` records).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache

from mlobs.core.checks import check_text
from mlobs.core.errors import ConfigError
from mlobs.core.limits import LABEL_KEY_MAX_CHARS, LABEL_VALUE_MAX_CHARS, LABELS_MAX
from mlobs.core.text import shown

#: the environment variable whose labels every run of the process gets.
LABELS_ENV = "MLOBS_RUN_LABELS"
#: what a label key matches (whole key).
KEY_PATTERN = f"[A-Za-z][A-Za-z0-9_.-]{{0,{LABEL_KEY_MAX_CHARS - 1}}}"
_KEY = re.compile(KEY_PATTERN)


def check_label_key(key: object, label: str = "labels") -> str:
    """``key`` if it is a string matching :data:`KEY_PATTERN`.

    Raises:
        ConfigError: ``<label> key <key> must be ...`` (the rule spelled out).
    """
    if isinstance(key, str) and _KEY.fullmatch(key) is not None:
        return key
    raise ConfigError(f"{label} key {shown(key, 80)} must be a letter followed by at most "
                      f"{LABEL_KEY_MAX_CHARS - 1} letters, digits, '_', '.' or '-' "
                      f"({KEY_PATTERN})")


def check_labels(labels: object, label: str = "labels") -> dict[str, str]:
    """``labels`` as a new ``dict`` when it is a mapping of at most 32 keys matching
    :data:`KEY_PATTERN` to ``str`` values of at most 256 characters; None gives ``{}``.

    Args:
        labels: the mapping to check.
        label: how messages name it (``labels``, ``MLOBS_RUN_LABELS``, ...).

    Raises:
        ConfigError: naming ``label``, the key, and the problem (not a mapping, too many
            labels, a bad key, a value that is not a string, too long, or not storable).
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{label} must be a mapping of str keys to str values (a dict), "
                          f"got {shown(labels, 60)}")
    if len(labels) > LABELS_MAX:
        raise ConfigError(f"{label} must hold at most {LABELS_MAX} labels, got {len(labels)}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        check_label_key(key, label)
        checked[key] = check_text(f"{label}[{key!r}]", value, LABEL_VALUE_MAX_CHARS)
    return checked


def parse_labels(text: str, *, source: str = "labels") -> dict[str, str]:
    """Labels from their text form ``key=value,key=value``.

    Whitespace around each pair, key and value is stripped; a value may hold ``=`` (the
    first one separates the key) but not ``,``; empty pairs (a trailing comma) are
    ignored, so ``""`` gives ``{}``. A key given again takes its later value, so labels
    can be appended to a variable's text (``"$MLOBS_RUN_LABELS,side=candidate"``). The
    result is checked by :func:`check_labels`.

    Args:
        text: the pairs, e.g. ``"experiment=asr-int8, release=rc-2"``.
        source: what messages name (``MLOBS_RUN_LABELS``, ``--label``).

    Returns:
        ``{key: value}`` in the order given (a key given again: at its last place).

    Raises:
        ConfigError: naming ``source``: a pair without ``=`` or without a key, or labels
            :func:`check_labels` refuses.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{source} must be text of key=value pairs, got {shown(text, 60)}")
    labels: dict[str, str] = {}
    for pair in text.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, equals, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise ConfigError(f"{source}: {shown(pair, 80)} is not KEY=VALUE (expected "
                              "key=value pairs separated by commas)")
        labels.pop(key, None)  # the later value, in its place in the text
        labels[key] = value
    return check_labels(labels, source)


@lru_cache(maxsize=8)
def _parsed_env(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_labels(text, source=LABELS_ENV).items())


def labels_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of ``MLOBS_RUN_LABELS`` (``{}`` when unset or blank).

    Args:
        environ: the environment to read (default: ``os.environ``).

    Raises:
        ConfigError: the variable is malformed (the message names it).
    """
    env = os.environ if environ is None else environ
    text = env.get(LABELS_ENV, "")
    return dict(_parsed_env(text)) if text.strip() else {}


def run_labels(labels: Mapping[str, str] | None,
               environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A run's labels: ``MLOBS_RUN_LABELS``'s, then ``labels`` over them (the call's own
    win on the same key), checked, sorted by key.

    Args:
        labels: the labels given to ``mlobs.run`` (None: none).
        environ: the environment to read (default: ``os.environ``).

    Raises:
        ConfigError: ``labels`` or the variable break a rule of :func:`check_labels`, or
            together hold more than 32 labels.
    """
    own = check_labels(labels)
    inherited = labels_from_env(environ)
    merged = {**inherited, **own}
    if len(merged) > LABELS_MAX:
        raise ConfigError(f"labels and {LABELS_ENV} together hold {len(merged)} labels, "
                          f"more than the {LABELS_MAX} a run may carry")
    return dict(sorted(merged.items()))
