"""The demo's data gives a drift table: run it twice, the second time with one component
slowed (``mlobs demo --slow embedding=3``), and the drift check names that component."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from mlobs.analysis.drift import Window, check_drift  # noqa: E402
from mlobs.core.errors import ConfigError  # noqa: E402
from mlobs.demo.runner import run_demo  # noqa: E402


def test_the_slowed_component_is_the_one_that_drifts(tmp_path):
    root = tmp_path / "demo"
    quiet = lambda line: None  # noqa: E731
    run_demo(root=root, progress=quiet, cache="bypass", pipeline_version="1.0")
    summary = run_demo(root=root, progress=quiet, cache="bypass", pipeline_version="1.1",
                       slow={"embedding": 3.0})
    report = check_drift(summary.warehouse_url, Window(pipeline_version="1.0"),
                         Window(pipeline_version="1.1"))
    durations = {c.component: c for c in report.checks
                 if c.metric == "duration_ms" and c.stratum == "computed"}
    embedding = durations.pop("embedding")
    assert embedding.verdict == "drift" and embedding.effect > 1.0, embedding
    # The slowed component stands out. A neighbour can drift a little too on a busy
    # machine (key_sentences, right after it, did in some runs here): a measured change,
    # not a false verdict, so it is bounded rather than forbidden.
    others = {name: (c.verdict, c.effect) for name, c in durations.items()
              if c.verdict == "drift"}
    assert all(abs(effect) < embedding.effect / 3 for _, effect in others.values()), others


def test_slow_refuses_an_unknown_component(tmp_path):
    with pytest.raises(ConfigError, match="no demo component"):
        run_demo(root=tmp_path, max_videos=1, progress=lambda line: None,
                 slow={"nope": 2.0})
