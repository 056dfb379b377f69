"""A failed component keeps its traceback (error_traceback): the user's frames first,
bounded, safe text, in the manifest and the warehouse."""

import copy
import json

import mlobs
from mlobs.core.limits import TRACEBACK_MAX_CHARS
from mlobs.core.manifest import read_manifest
from mlobs.warehouse.store import WarehouseStore


def parse_user_config(text):
    return json.loads(text)  # the library frame where it fails


def load_config():
    return parse_user_config("{not json")


def recorded(run, name):
    """The component's record from the manifest and from the warehouse."""
    assert mlobs.flush(10)
    _, components = read_manifest(run.manifest_path)
    with WarehouseStore(mlobs.settings().db_url) as store:
        _, stored = store.get_run(run.run_id)
    return [next(c for c in records if c.component == name) for records in (components, stored)]


def test_a_failure_keeps_the_users_frames_and_the_exception_line(tmp_path):
    mlobs.configure(root=tmp_path)
    with mlobs.run("youtube", "v1") as run:
        with run.component("config", required=False):
            load_config()
        with run.component("after"):
            pass
    for record in recorded(run, "config"):
        text = record.error_traceback
        assert text.startswith("Traceback (most recent call last):")
        assert "in load_config" in text and "in parse_user_config" in text
        assert text.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError:")
        assert "mlobs/hooks" not in text  # mlobs's wrappers are not the user's business
    assert all(c.error_traceback is None for c in recorded(run, "after"))


def nest(depth):
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def test_a_traceback_thousands_of_frames_deep_is_bounded_and_keeps_the_users_frame(tmp_path):
    mlobs.configure(root=tmp_path)
    deep = nest(5000)  # deepcopy recurses past the interpreter's limit in the stdlib
    with mlobs.run("youtube", "v1") as run:
        with run.component("copying", required=False):
            copy.deepcopy(deep)
    for record in recorded(run, "copying"):
        text = record.error_traceback
        assert len(text) <= TRACEBACK_MAX_CHARS
        assert "in test_a_traceback_thousands_of_frames_deep" in text
        assert "frames omitted" in text
        assert text.rstrip().endswith("maximum recursion depth exceeded") or (
            "RecursionError" in text.rstrip().splitlines()[-1])


def test_control_characters_and_lone_surrogates_are_made_safe(tmp_path):
    mlobs.configure(root=tmp_path)
    with mlobs.run("youtube", "v1") as run:
        with run.component("odd", required=False):
            raise ValueError("red \x1b[31m text, file \udcff, nul \x00")
    for record in recorded(run, "odd"):
        last = record.error_traceback.rstrip().splitlines()[-1]
        assert "\x1b" not in last and "\x00" not in last
        last.encode("utf-8")  # storable: no lone surrogate
        assert last.startswith("ValueError: red ")
