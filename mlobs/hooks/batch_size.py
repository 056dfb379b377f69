"""Choosing a batch size before the run from free memory and a memory checklist.

Rule (model system rules §8): the batch size is chosen *before* the run from the memory
available on the target device and a checklist of per-item and fixed costs, and the size
used is recorded. :func:`choose_batch_size` returns a :class:`BatchSizeChoice`; passed as
``batch_size=`` to a component it becomes that component's requested batch size and a
``batch_size_chosen`` event with the inputs of the choice.

A checklist maps a name (a model or component) to its costs, in a JSON or TOML file or a
dict::

    [asr]
    per_item_mib = 48      # activations per item
    fixed_mib = 1900       # weights, workspace, CUDA context

Keys ``per_item_bytes``/``fixed_bytes`` or ``per_item_mib``/``fixed_mib`` are accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlobs.core.errors import ComponentError, ConfigError

_MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryCost:
    """What one batch costs on a device: ``fixed_bytes + batch_size * per_item_bytes``."""

    per_item_bytes: int
    fixed_bytes: int = 0

    def __post_init__(self) -> None:
        if not self.per_item_bytes > 0 or self.fixed_bytes < 0:
            raise ConfigError("per_item_bytes must be > 0 and fixed_bytes >= 0, got "
                              f"{self.per_item_bytes!r} and {self.fixed_bytes!r}")


@dataclass(frozen=True)
class BatchSizeChoice:
    """The outcome of :func:`choose_batch_size`; all sizes in bytes."""

    batch_size: int
    device: str
    free_bytes: int
    usable_bytes: int
    per_item_bytes: int
    fixed_bytes: int
    max_batch_size: int | None

    def attributes(self) -> dict[str, Any]:
        """The ``batch_size_chosen`` event's attributes."""
        return asdict(self)


def load_checklist(source: str | Path | Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, MemoryCost]:
    """Read a memory checklist (a ``.json``/``.toml`` path or a mapping).

    Raises:
        ConfigError: unreadable file, unknown format or an entry without a per-item cost.
    """
    if isinstance(source, Mapping):
        raw = source
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
            raw = _load_toml(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read memory checklist {path}: {exc}") from exc
    costs = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"memory checklist entry {name!r} must be a table of costs")
        costs[name] = MemoryCost(per_item_bytes=_bytes(entry, name, "per_item"),
                                 fixed_bytes=_bytes(entry, name, "fixed", default=0))
    return costs


def _load_toml(text: str) -> Mapping[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError as exc:
        raise ConfigError("TOML checklists need Python 3.11 or later; use a .json "
                          "checklist") from exc
    return tomllib.loads(text)


def _bytes(entry: Mapping[str, Any], name: str, key: str, default: int | None = None) -> int:
    if f"{key}_bytes" in entry:
        return int(entry[f"{key}_bytes"])
    if f"{key}_mib" in entry:
        return int(float(entry[f"{key}_mib"]) * _MIB)
    if default is None:
        raise ConfigError(f"memory checklist entry {name!r} needs {key}_bytes or {key}_mib")
    return default


def free_bytes_of(device: str) -> int | None:
    """Free memory of ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) in bytes, or None.

    CPU: what this process may still allocate (available memory, bounded by
    ``RLIMIT_AS``). CUDA: torch's ``mem_get_info`` when the user imported torch, else NVML.
    """
    if device.split(":", 1)[0] == "cuda":
        from mlobs.probes.gpu_oom import cuda_free_bytes
        return cuda_free_bytes(device)
    from mlobs.probes.rss import cpu_free_bytes
    return cpu_free_bytes()


def choose_batch_size(cost: MemoryCost, *, device: str = "cpu",
                      max_batch_size: int | None = None, safety_fraction: float = 0.9,
                      free_bytes: int | None = None) -> BatchSizeChoice:
    """The largest batch size whose cost fits the free memory of ``device``.

    ``batch_size = floor((free_bytes * safety_fraction - fixed_bytes) / per_item_bytes)``,
    capped at ``max_batch_size``.

    Args:
        cost: per-item and fixed bytes, e.g. ``load_checklist(path)["asr"]``.
        device: the target device.
        max_batch_size: never choose more than this.
        safety_fraction: the share of free memory the batch may use (0 < f <= 1); the
            rest absorbs fragmentation and what the estimate misses.
        free_bytes: free memory in bytes; measured on ``device`` when omitted.

    Raises:
        ConfigError: invalid arguments, or the free memory of ``device`` is unknown.
        ComponentError: not even one item fits; error_code ``insufficient_gpu_memory``
            on a GPU, ``oom`` on the CPU.
    """
    if not 0 < safety_fraction <= 1:
        raise ConfigError(f"safety_fraction must be in (0, 1], got {safety_fraction!r}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
    if free_bytes is None:
        free_bytes = free_bytes_of(device)
        if free_bytes is None:
            raise ConfigError(f"free memory of {device!r} is unknown (no torch CUDA or NVML); "
                              "pass free_bytes=")
    usable = int(free_bytes * safety_fraction)
    size = (usable - cost.fixed_bytes) // cost.per_item_bytes
    if max_batch_size is not None:
        size = min(size, max_batch_size)
    if size < 1:
        code = "insufficient_gpu_memory" if device.startswith("cuda") else "oom"
        raise ComponentError(code, f"one item needs {cost.fixed_bytes + cost.per_item_bytes} "
                                   f"bytes on {device}; {usable} usable of {free_bytes} free")
    return BatchSizeChoice(batch_size=int(size), device=device, free_bytes=int(free_bytes),
                           usable_bytes=usable, per_item_bytes=cost.per_item_bytes,
                           fixed_bytes=cost.fixed_bytes, max_batch_size=max_batch_size)
