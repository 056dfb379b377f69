"""Every argument is checked at the call, against the bound the warehouse enforces: a bad
one is a ConfigError naming it, never an error at the run's end or a lost record."""

from __future__ import annotations

import math

import pytest

import mlobs
from mlobs.core.manifest import read_manifest
from mlobs.warehouse.store import WarehouseStore


def test_a_batch_size_beyond_the_warehouse_column_is_refused_at_the_call(tmp_path):
    mlobs.configure(root=tmp_path, sinks=[])
    with pytest.raises(mlobs.ConfigError, match=r"batch_size must be an integer < 2\*\*31"):
        mlobs.component("big", batch_size=2**31)(len)
    with mlobs.run("youtube", "v1") as run:
        with pytest.raises(mlobs.ConfigError, match="batch_size"):
            run.component("big", batch_size=2**31)
        with run.component("fits", batch_size=2**31 - 1):
            pass

    @mlobs.component("given", batch_size=8, on_oom=mlobs.HalveBatch(min=1))
    def given(batch_size):
        return batch_size

    with mlobs.run("youtube", "v2"):
        with pytest.raises(mlobs.ConfigError, match="batch_size"):
            given(batch_size=2**40)


@pytest.mark.parametrize("seed", [math.nan, object(), 1.5, -1, 2**32, True])
def test_a_seed_out_of_range_is_refused_when_the_run_is_made(seed):
    with pytest.raises(mlobs.ConfigError, match="seed"):
        mlobs.run("youtube", "v1", seed=seed)


@pytest.mark.parametrize("timeout", [math.inf, 10**400, 1e20, "10", math.nan, -1])
def test_flush_timeout_s_is_checked_at_the_call_not_at_the_run_end(timeout):
    with pytest.raises(mlobs.ConfigError, match="flush_timeout_s"):
        mlobs.run("youtube", "v1", flush_timeout_s=timeout)
    with pytest.raises(mlobs.ConfigError, match="timeout_s"):
        mlobs.flush(timeout)


@pytest.mark.parametrize("config", [[1, 2], "lang=en", 3])
def test_a_config_that_is_not_a_mapping_is_a_config_error(config):
    with pytest.raises(mlobs.ConfigError, match="config must be a mapping"):
        mlobs.run("youtube", "v1", config=config)


def test_intermediate_dir_refuses_a_lone_surrogate_with_a_config_error(tmp_path):
    with pytest.raises(mlobs.ConfigError, match="video_id"):
        mlobs.intermediate_dir("youtube", "bad\udcff", "frames", root=tmp_path)
    with pytest.raises(mlobs.ConfigError, match="intermediate directory name"):
        mlobs.intermediate_dir("youtube", "v1", "", root=tmp_path)


def _error_class(qualname: str) -> type[Exception]:
    cls = type("Failure", (Exception,), {})
    cls.__qualname__ = qualname
    return cls


@pytest.mark.parametrize("qualname", ["Outer." * 52 + "Failure", "Bad\udcffFailure"])
def test_an_odd_exception_class_name_is_recorded_bounded_and_safe(tmp_path, qualname):
    mlobs.configure(root=tmp_path)
    failure = _error_class(qualname)
    with mlobs.run("youtube", "v1") as run:
        with run.component("fragile", required=False):
            raise failure("boom")
        with run.component("after"):
            pass
    assert mlobs.flush(10)
    _, components = read_manifest(run.manifest_path)
    with WarehouseStore(mlobs.settings().db_url) as store:
        stored = store.get_run(run.run_id)
    assert stored is not None
    for records in (components, stored[1]):
        by_name = {c.component: c for c in records}
        assert set(by_name) == {"fragile", "after"}
        error_type = by_name["fragile"].error_type
        assert len(error_type) <= 255
        error_type.encode("utf-8")  # storable text: no lone surrogate
        assert error_type.endswith("Failure") or error_type.startswith("Outer.")


def test_numpy_integers_are_integers_and_none_waits_without_a_bound():
    np = pytest.importorskip("numpy")
    run = mlobs.run("youtube", "v1", seed=np.int64(7), flush_timeout_s=None)
    assert run._seed == 7 and type(run._seed) is int
    assert mlobs.set_seed(np.uint32(3)) and mlobs.flush(None)
