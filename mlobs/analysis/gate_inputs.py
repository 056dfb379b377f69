"""The two sides of a release gate, from the warehouse or from pytest-benchmark files.

* :func:`load_run_set` selects runs from the warehouse by a :class:`RunSet` (any mix of
  pipeline_version, run labels, a time range of the runs' ``started_at`` and run ids)
  and reduces their component invocations to one value per run (rules in
  :mod:`mlobs.analysis.gate`).
* :func:`load_benchmark_json` reads a pytest-benchmark JSON file (``--benchmark-json``
  or a saved run): each benchmark is a "component", each of its rounds one value
  (``stats.data``, saved with ``--benchmark-save-data``; seconds, turned into
  ``duration_ms``). Without raw data the summary (mean, stddev, rounds) is compared
  with Welch's t-test instead. Numeric ``extra_info`` entries are the benchmark's
  figures, which ``[[figure]]`` budgets check.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.exc import SQLAlchemyError

from mlobs.analysis.gate import GateInput, GroupData, Invocations, figures_of
from mlobs.core.checks import check_time_range
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.warehouse.engine import create_warehouse_engine, display_url, require_sqlite_file
from mlobs.warehouse.labels import label_conditions
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import ComponentRun, Run

COMPONENTS: Table = ComponentRun.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]
_CHUNK = 500  # run ids per IN (...): below every backend's bind-parameter limit


@dataclass(frozen=True)
class RunSet:
    """Which runs a side holds: every filter given must match.

    Args:
        pipeline_version: the runs' pipeline_version.
        labels: ``{key: value}`` run labels the runs carry (all of them).
        since, until: the runs' ``started_at`` in [since, until) (aware datetimes).
        run_ids: these runs only.

    Raises:
        ConfigError: no filter at all, a naive datetime, or since not before until.
    """

    pipeline_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    run_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_time_range("a run set", self.since, self.until)
        if not (self.pipeline_version or self.labels or self.since or self.until
                or self.run_ids):
            raise ConfigError("a run set needs a pipeline_version, a label, a time range "
                              "or run ids")

    def describe(self) -> str:
        """One line, e.g. ``pipeline_version=1.4.0 label release=rc-2``."""
        parts = []
        if self.pipeline_version is not None:
            parts.append(f"pipeline_version={self.pipeline_version}")
        parts += [f"label {k}={v}" for k, v in sorted(self.labels.items())]
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name} {value.astimezone(timezone.utc).isoformat()}")
        if self.run_ids:
            shown = ",".join(self.run_ids[:3]) + ("…" if len(self.run_ids) > 3 else "")
            parts.append(f"{len(self.run_ids)} run id(s) {shown}")
        return " ".join(parts)


def _query(run_set: RunSet, chunk: Sequence[str] | None) -> Any:
    c, r = COMPONENTS.c, RUNS.c
    where = []
    if run_set.pipeline_version is not None:
        where.append(r.pipeline_version == run_set.pipeline_version)
    if run_set.since is not None:
        where.append(r.started_at >= run_set.since)
    if run_set.until is not None:
        where.append(r.started_at < run_set.until)
    if chunk is not None:
        where.append(c.run_id.in_(list(chunk)))
    where += label_conditions(run_set.labels, c.run_id)
    return (select(c.run_id, r.started_at.label("run_started_at"), r.profile, c.component, c.model_signature, c.status,
                   c.cache_status, c.oom_count, c.duration_ms, c.peak_rss_bytes,
                   c.peak_gpu_allocated_bytes, c["items"].label("n_items"))
            .select_from(COMPONENTS.join(RUNS, r.run_id == c.run_id))
            .where(and_(*where)))


def load_run_set(db_url: str, run_set: RunSet) -> GateInput:
    """The side ``run_set`` selects from the warehouse at ``db_url``.

    Raises:
        WarehouseError: the warehouse is missing, not at the current schema, or cannot
            be read.
    """
    require_sqlite_file(db_url)
    engine = create_warehouse_engine(db_url)
    ids = run_set.run_ids
    chunks = [None] if not ids else [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    try:
        check_schema(engine)
        with engine.connect() as conn:
            rows = [row for chunk in chunks for row in conn.execute(_query(run_set, chunk))]
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading the run set ({run_set.describe()}) failed on "
                             f"{display_url(engine)}: {exc}") from exc
    finally:
        engine.dispose()
    return side_from_rows(run_set.describe(), rows)


def side_from_rows(description: str, rows: Sequence[Any]) -> GateInput:
    """Reduce invocation rows (attributes as :func:`load_run_set` selects them) to a side,
    each group's per-run values in the order the runs started."""
    by_group: dict[tuple[str, str | None], dict[str, list[Any]]] = defaultdict(
        lambda: defaultdict(list))
    # per-run values in the order the runs started: the tolerance reads run-to-run noise
    for row in sorted(rows, key=lambda r: (r.run_started_at, r.run_id)):
        by_group[(row.component, row.model_signature)][row.run_id].append(row)
    side = GateInput(description, runs=len({row.run_id for row in rows}))
    for key, runs in by_group.items():
        data = side.groups[key] = GroupData(runs=len(runs))
        for run_rows in runs.values():
            _add_run(data, run_rows)
    return side


def _add_run(data: GroupData, rows: list[Any]) -> None:
    strata: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        inv = data.invocations.setdefault(row.profile, Invocations())
        inv.total += 1
        inv.errors += row.status == "error"
        inv.empties += row.status == "empty"
        inv.ooms += (row.oom_count or 0) > 0
        inv.hits += row.cache_status == "hit"
        inv.misses += row.cache_status == "miss"
        for name, target in (("peak_rss_bytes", inv.peak_rss_bytes),
                             ("peak_gpu_allocated_bytes", inv.peak_gpu_bytes)):
            if getattr(row, name) is not None:
                target.append(float(getattr(row, name)))
        if row.status == "error":
            continue
        computed = row.cache_status != "hit"
        strata["computed" if computed else "cache_hit"].append(row)
        if computed and row.duration_ms is not None:
            inv.durations_ms.append(float(row.duration_ms))
            if row.n_items is not None and row.duration_ms > 0:
                inv.items += row.n_items
                inv.items_seconds += row.duration_ms / 1000
    for stratum, stratum_rows in strata.items():
        for metric, value in _run_values(stratum_rows).items():
            data.per_run.setdefault((stratum, metric), []).append(value)


def _run_values(rows: list[Any]) -> dict[str, float]:
    """One run's values: the median duration, the largest peaks, items per second."""
    values: dict[str, float] = {}
    durations = sorted(float(r.duration_ms) for r in rows if r.duration_ms is not None)
    if durations:
        mid = len(durations) // 2
        values["duration_ms"] = durations[mid] if len(durations) % 2 else \
            (durations[mid - 1] + durations[mid]) / 2
    for metric in ("peak_rss_bytes", "peak_gpu_allocated_bytes"):
        peaks = [float(getattr(r, metric)) for r in rows if getattr(r, metric) is not None]
        if peaks:
            values[metric] = max(peaks)
    timed = [r for r in rows if r.n_items is not None and r.duration_ms and r.duration_ms > 0]
    if timed:
        values["items_per_s"] = sum(r.n_items for r in timed) / \
            (sum(r.duration_ms for r in timed) / 1000)
    return values


def load_benchmark_json(path: str | os.PathLike[str]) -> GateInput:
    """A side from a pytest-benchmark JSON file (see the module docstring).

    Raises:
        ConfigError: the file cannot be read, is not JSON, or is not a pytest-benchmark
            document (the message says what is missing).
    """
    name = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the benchmark file {name}: {exc}") from exc
    benchmarks = document.get("benchmarks") if isinstance(document, dict) else None
    if not isinstance(benchmarks, list):
        raise ConfigError(f"{name} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    side = GateInput(f"pytest-benchmark {Path(name).name}")
    names = [b.get("name") if isinstance(b, dict) else None for b in benchmarks]
    for index, bench in enumerate(benchmarks):
        title = _benchmark_name(name, index, bench, names)
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise ConfigError(f"{name}: benchmark {title!r} has no 'stats' object")
        data = GroupData()
        raw = stats.get("data")
        if isinstance(raw, list) and raw:
            values = [_seconds(name, title, v) * 1000 for v in raw]
            data.per_run[("computed", "duration_ms")] = values
            data.invocations[None] = Invocations(durations_ms=list(values), total=len(values))
            data.runs = len(values)
        else:
            summary = data.summaries[("computed", "duration_ms")] = _summary(name, title, stats)
            data.runs = summary[2]
        side.groups[(title, None)] = data
        side.runs = max(side.runs, data.runs)
        extra = bench.get("extra_info")
        if isinstance(extra, dict):
            for figure, value in figures_of(extra).items():
                side.figures[(title, figure)] = value
    return side


def _benchmark_name(path: str, index: int, bench: Any, names: list[Any]) -> str:
    if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
        raise ConfigError(f"{path}: benchmarks[{index}] has no 'name'")
    if names.count(bench["name"]) == 1:
        return bench["name"]
    if isinstance(bench.get("fullname"), str):
        return bench["fullname"]
    raise ConfigError(f"{path}: two benchmarks are named {bench['name']!r} and "
                      f"benchmarks[{index}] has no 'fullname' to tell them apart")


def _seconds(path: str, title: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{path}: benchmark {title!r} has a round that is not a "
                          f"duration in seconds: {value!r:.40}")
    return float(value)


def _summary(path: str, title: str, stats: Mapping[str, Any]) -> tuple[float, float, int]:
    """(mean_ms, stddev_ms, rounds) of a benchmark saved without raw data."""
    try:
        mean, sd, rounds = (_seconds(path, title, stats["mean"]) * 1000,
                            _seconds(path, title, stats["stddev"]) * 1000,
                            int(stats["rounds"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: benchmark {title!r} has neither raw 'data' nor "
                          f"'mean', 'stddev' and 'rounds' in its stats ({exc})") from None
    return mean, sd, rounds
