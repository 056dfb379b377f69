"""OOM handling: batch-size degradation policies and the memory snapshot of an OOM event.

The rule (model system rules §8): on OOM, reducing ``batch_size`` and retrying is a
degradation of parameters, not a model fallback. A component opts in with
``on_oom=mlobs.HalveBatch(min=1)``; each OOM becomes an event carrying the attempt, the
batch size that failed and a memory snapshot; when the policy has no smaller size left the
component ends with error_code ``insufficient_gpu_memory`` (a GPU OOM) or ``oom`` (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mlobs.core.checks import check_int
from mlobs.core.classify import oom_device_kind, requested_bytes
from mlobs.core.records import device_kind_of
from mlobs.probes.gpu_oom import cuda_memory_snapshot
from mlobs.probes.rss import cpu_memory_snapshot

#: error_code of a GPU OOM that no smaller batch size could avoid (model system rules §7).
INSUFFICIENT_GPU_MEMORY = "insufficient_gpu_memory"


@runtime_checkable
class OomPolicy(Protocol):
    """Decides the next batch size after an OOM."""

    def next_batch_size(self, batch_size: int) -> int | None:
        """The batch size to try after ``batch_size`` failed, or ``None`` to give up.

        A returned value must be smaller than ``batch_size``.
        """


@dataclass(frozen=True)
class HalveBatch:
    """Halve the batch size after each OOM, down to ``min`` (inclusive).

    Args:
        min: the smallest batch size worth trying (>= 1). A failure at a size whose half
            is below ``min`` ends the component.

    Raises:
        ConfigError: ``min`` < 1.
    """

    min: int = 1

    def __post_init__(self) -> None:
        check_int("HalveBatch(min=...)", self.min, 1)

    def next_batch_size(self, batch_size: int) -> int | None:
        smaller = batch_size // 2
        return smaller if smaller >= self.min else None


def oom_snapshot(exc: BaseException, device: str | None) -> dict[str, Any]:
    """The attributes of an ``oom`` event: where it happened and the memory state.

    Args:
        exc: the OOM exception (its message may state the requested size).
        device: the component's device (``"cuda:0"``, ``"cpu"``, ``None``); the exception
            itself decides the device kind when it says (a CUDA OOM on a ``cpu`` component
            is still a CUDA OOM).

    Returns:
        ``device_kind``, ``requested_bytes`` when the message gives it, and
        ``allocated_bytes``/``reserved_bytes``/``free_bytes``/``total_bytes`` (CUDA) or
        ``rss_bytes``/``vms_bytes``/``available_bytes``/``address_space_limit_bytes``
        (CPU), whichever can be read.
    """
    kind = oom_device_kind(exc, default=device_kind_of(device))
    snapshot: dict[str, Any] = {"device_kind": kind}
    wanted = requested_bytes(exc)
    if wanted is not None:
        snapshot["requested_bytes"] = wanted
    if kind == "cuda":
        snapshot.update(cuda_memory_snapshot(device if device_kind_of(device) == "cuda"
                                             else None))
    else:
        snapshot.update(cpu_memory_snapshot())
    return snapshot
