"""Hashing a component's declared inputs, so that a changed upstream invalidates it.

``input_hash(inputs)`` is the SHA-256 of the canonical JSON of the inputs, where
:class:`FileInput` values stand for the SHA-256 of the file's content, and arrays
(anything with ``tobytes``, ``dtype`` and ``shape``, such as numpy arrays; torch tensors
through ``.detach().cpu().numpy()``) for the SHA-256 of their bytes with their dtype and shape. Pydantic models and
dataclasses go through their JSON form. Anything else JSON cannot hold makes the key
incomplete: the component is then not cached (fail closed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlobs.cache.codecs import to_json_value
from mlobs.core.canonical import sha256_hex
from mlobs.core.errors import ConfigError

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileInput:
    """A file whose content is an input (hashed by content, not by name or mtime)."""

    path: str | os.PathLike[str]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content, read in 1 MiB chunks.

    Raises:
        ConfigError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"input file {path} cannot be read: {exc}") from exc
    return digest.hexdigest()


def _hashable(value: Any) -> Any:
    if isinstance(value, FileInput):
        return {"file_sha256": file_sha256(value.path)}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "detach") and hasattr(value, "numpy") and hasattr(value, "shape"):
        return _tensor_hashable(value)
    if hasattr(value, "tobytes") and hasattr(value, "dtype") and hasattr(value, "shape"):
        return {"array_sha256": hashlib.sha256(value.tobytes()).hexdigest(),
                "dtype": str(value.dtype), "shape": list(value.shape)}
    value = to_json_value(value) if not isinstance(value, type) else value
    if isinstance(value, Mapping):
        return {str(k): _hashable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hashable(v) for v in value]
    return value


def _tensor_hashable(tensor: Any) -> dict[str, Any]:
    """A torch tensor, moved to the CPU; dtypes numpy lacks (bfloat16) are widened to
    float32 for the bytes (exact for bfloat16) and keep their own dtype in the hash."""
    host = tensor.detach().cpu()
    try:
        array = host.numpy()
    except TypeError:
        try:
            array = host.float().numpy()
        except Exception as exc:  # a dtype without a float view: not hashable, not cached
            raise ConfigError(f"a {tensor.dtype} tensor cannot be hashed: {exc}") from exc
    return {"array_sha256": hashlib.sha256(array.tobytes()).hexdigest(),
            "dtype": str(tensor.dtype).removeprefix("torch."), "shape": list(tensor.shape)}


def input_hash(inputs: Any) -> str:
    """SHA-256 (64 hex) of the declared inputs (see the module docstring).

    Raises:
        ConfigError: an input JSON cannot represent, or a file that cannot be read.
    """
    return sha256_hex(_hashable(inputs))


__all__ = ["FileInput", "file_sha256", "input_hash"]
