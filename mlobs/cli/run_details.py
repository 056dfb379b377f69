"""``mlobs runs show``: a run's fields as text a person reads.

Scalar fields are a two-column table; each mapping field (config, environment,
resolved_models) is a block of its own below it, one ``key  value`` line per leaf, nested
keys dotted (``packages.torch``), lists joined with ``, `` and wrapped under their value
column. ``--json`` keeps the records as they are.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from mlobs.cli.formatting import MISSING, labels_text, tabulate, when
from mlobs.core.liveness import shown_status

if TYPE_CHECKING:
    from mlobs.core.records import RunRecord

#: lines of ``runs show`` are wrapped to this many characters.
WIDTH = 88
#: block keys are indented by this many spaces.
INDENT = 2


def run_text(run: RunRecord, now: datetime | None = None) -> str:
    """The run's scalar fields as a table, then a block per non-empty mapping field."""
    data = run.to_dict()
    data["status"] = shown_status(run, now or datetime.now(timezone.utc))
    data["started_at"], data["finished_at"] = when(run.started_at), when(run.finished_at)
    if run.heartbeat_at is not None:
        data["heartbeat_at"] = when(run.heartbeat_at)
    data["labels"] = labels_text(run.labels)
    rows = []
    blocks = []
    for name, value in data.items():
        if isinstance(value, Mapping) and value:
            blocks.append(block(name, value))
        else:
            rows.append((name, _scalar_cell(value)))
    table = tabulate(rows, tablefmt="plain", disable_numparse=True)
    return "\n\n".join([table, *blocks])


def block(title: str, mapping: Mapping[str, Any]) -> str:
    """``title:`` then one aligned ``key  value`` line per leaf of ``mapping``."""
    leaves = list(flatten(mapping))
    width = max(len(key) for key, _ in leaves)
    lines = [f"{title}:"]
    for key, value in leaves:
        lead = " " * INDENT + key.ljust(width) + "  "
        wrapped = textwrap.wrap(value, max(20, WIDTH - len(lead)), break_long_words=False,
                                break_on_hyphens=False) or [""]
        lines.append(lead + wrapped[0])
        lines += [" " * len(lead) + more for more in wrapped[1:]]
    return "\n".join(lines)


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, text)`` per leaf: mappings are walked (keys dotted), lists of
    scalars joined with ``, ``, lists holding mappings or lists numbered (``gpus.0``)."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}.{index}")
    else:
        yield prefix, leaf_text(value)


def leaf_text(value: Any) -> str:
    """A value as shown: text as is, ``null``/``true``/``false`` as in JSON, lists
    joined with ``, ``, ``-`` for an empty list or mapping."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(leaf_text(v) for v in value) if value else MISSING
    if isinstance(value, Mapping):
        return MISSING
    return json.dumps(value)


def _scalar_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)  # warnings: one a line
    if isinstance(value, Mapping):
        return MISSING  # an empty mapping (a non-empty one is a block)
    return str(value)
