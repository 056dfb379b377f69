"""Identifiers used in manifest paths cannot escape the runs directory."""

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mlobs.core.paths import MAX_SEGMENT_CHARS, manifest_path, safe_segment


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=400))
def test_a_segment_is_one_harmless_directory_name(identifier):
    segment = safe_segment(identifier)
    assert "/" not in segment and "\x00" not in segment and "\\" not in segment
    assert segment not in ("", ".", "..")
    assert len(segment) <= MAX_SEGMENT_CHARS


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_distinct_identifiers_get_distinct_segments(a, b):
    if a != b:
        assert safe_segment(a) != safe_segment(b)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=60))
def test_manifest_paths_stay_under_the_runs_directory(platform_id, video_id, run_id):
    runs = Path("/data/mlobs/runs")
    path = manifest_path(runs, platform_id, video_id, run_id)
    assert path.parent.parent.parent.parent == runs
    assert ".." not in path.parts
