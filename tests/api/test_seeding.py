"""mlobs.set_seed: seeds what the program imported and records the seed on the run."""

import random

import numpy as np
import pytest

import mlobs
from mlobs.testing import capture


def test_seed_is_set_and_recorded_on_the_run():
    with capture() as rec:
        with mlobs.run("youtube", "abc"):
            seeded = mlobs.set_seed(1234)
            first = (random.random(), np.random.random())
        mlobs.set_seed(1234)  # outside a run: seeds, records nothing
        assert (random.random(), np.random.random()) == first
    assert "random" in seeded and "numpy" in seeded
    environment = rec.run().environment
    assert environment["seed"] == 1234 and environment["seeded"] == seeded


def test_the_running_snapshot_is_not_changed_by_a_later_seed():
    with capture() as rec:
        with mlobs.run("youtube", "abc"):
            [running] = rec.runs  # the snapshot the sinks received at the run's start
            mlobs.set_seed(7)
            assert "seed" not in running.environment
    assert rec.run().environment["seed"] == 7


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "7"])
def test_invalid_seeds_are_refused(seed):
    with pytest.raises(mlobs.ConfigError):
        mlobs.set_seed(seed)
