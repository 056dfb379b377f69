"""Input hashing: equal inputs hash equal, a changed byte changes the hash."""

import numpy as np
import pytest

import mlobs
from mlobs.cache.inputs import FileInput, input_hash


def test_arrays_hash_by_content_dtype_and_shape():
    base = input_hash({"x": np.arange(6, dtype=np.float32)})
    assert input_hash({"x": np.arange(6, dtype=np.float32)}) == base
    assert input_hash({"x": np.arange(6, dtype=np.float64)}) != base
    assert input_hash({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}) != base


def test_torch_tensors_hash_like_their_numpy_values():
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6, dtype=torch.float32)
    assert input_hash({"x": tensor}) == input_hash({"x": np.arange(6, dtype=np.float32)})
    assert input_hash({"x": tensor + 1}) != input_hash({"x": tensor})
    half = tensor.to(torch.bfloat16)  # numpy has no bfloat16
    assert input_hash({"x": half}) == input_hash({"x": tensor.to(torch.bfloat16)})
    assert input_hash({"x": half}) != input_hash({"x": tensor})


def test_files_hash_by_content_not_name(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert input_hash(FileInput(a)) == input_hash(FileInput(b))
    b.write_bytes(b"other")
    assert input_hash(FileInput(a)) != input_hash(FileInput(b))
    with pytest.raises(mlobs.ConfigError, match="cannot be read"):
        input_hash(FileInput(tmp_path / "missing.wav"))


def test_what_json_cannot_hold_is_refused():
    with pytest.raises(mlobs.ConfigError):
        input_hash({"x": object()})
