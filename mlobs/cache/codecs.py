"""How cached results become bytes: JSON by default, a user codec when plugged in.

Rule (versioned stage results, ADR-005): results are JSON files. Dataclasses and pydantic
models go through their JSON form and come back as the same type when the codec knows
it. Pickle is never the default: a cache file must be readable by people and by other
languages, and loading one must never run code.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol, runtime_checkable

from mlobs.core.errors import ConfigError


@runtime_checkable
class Codec(Protocol):
    """Turns a result into bytes and back. ``name`` is stored with each version."""

    name: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def to_json_value(value: Any) -> Any:
    """``value`` as JSON-native data: pydantic models via ``model_dump(mode="json")``,
    dataclasses via ``dataclasses.asdict``, anything else as is."""
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _is_typed(value: Any) -> bool:
    return (hasattr(value, "model_dump") and callable(value.model_dump)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type))


class JsonCodec:
    """The default codec: UTF-8 JSON.

    Args:
        result_type: a pydantic model or dataclass type to rebuild on load (``None``:
            loads plain JSON data: dicts, lists, strings, numbers, booleans, ``None``).

    Encoding raises :class:`~mlobs.core.errors.ConfigError` for values JSON cannot hold (NaN,
    sets, arbitrary objects), so an unstorable result is caught when it is produced; and
    for a dataclass or pydantic result when ``result_type`` is not given, since a hit
    would otherwise hand back a dict where the code expects its type. ``result_type`` is
    rebuilt one level deep: nested dataclasses need pydantic models or a codec of your own.
    """

    name = "json"

    def __init__(self, result_type: type | None = None) -> None:
        self.result_type = result_type

    def encode(self, value: Any) -> bytes:
        if self.result_type is None and _is_typed(value):
            raise ConfigError(f"a {type(value).__name__} result needs "
                              f"codec=mlobs.JsonCodec(result_type={type(value).__name__}) "
                              "so that a cache hit gives the same type back")
        try:
            return json.dumps(to_json_value(value), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"result cannot be stored as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        value = json.loads(data)
        kind = self.result_type
        if kind is None:
            return value
        if hasattr(kind, "model_validate"):
            return kind.model_validate(value)
        if dataclasses.is_dataclass(kind):
            return kind(**value)
        return kind(value)


DEFAULT_CODEC = JsonCodec()
