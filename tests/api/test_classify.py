"""Exception → error_code classification, and how users extend it."""

import asyncio
import concurrent.futures

import pytest

import mlobs
from mlobs.core import classify


@pytest.fixture(autouse=True)
def _restore_rules(monkeypatch):
    """Rules registered by a test are forgotten after it; others' rules are kept."""
    monkeypatch.setattr(classify, "_rules", classify._rules)


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which mlobs matches without importing torch."""


@pytest.mark.parametrize("exc, code", [
    (mlobs.ComponentError("model_load_failed", "no weights"), "model_load_failed"),
    (MemoryError(), "oom"),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 8589934592 bytes"), "oom"),
    (TimeoutError(), "timeout"),
    (asyncio.TimeoutError(), "timeout"),
    (concurrent.futures.TimeoutError(), "timeout"),
    (ConnectionRefusedError(), "transient"),
    (ConnectionResetError(), "transient"),
    (KeyboardInterrupt(), "interrupted"),
    (ValueError("bad input"), "internal"),
    (RuntimeError("something else"), "internal"),
])
def test_builtin_rules(exc, code):
    assert mlobs.classify_exception(exc) == code


def test_users_register_types_and_rules_newest_first():
    class TritonDown(Exception):
        pass

    mlobs.register_error_code(TritonDown, "triton_unavailable")
    assert mlobs.classify_exception(TritonDown()) == "triton_unavailable"

    mlobs.register_classifier(lambda e: "http_503" if "503" in str(e) else None)
    assert mlobs.classify_exception(TritonDown("503")) == "http_503"
    assert mlobs.classify_exception(TritonDown("other")) == "triton_unavailable"


def test_a_broken_rule_is_skipped():
    def broken(exc):
        raise RuntimeError("rule bug")

    mlobs.register_classifier(broken)
    assert mlobs.classify_exception(MemoryError()) == "oom"


def test_registration_validates_its_arguments():
    with pytest.raises(mlobs.ConfigError):
        mlobs.register_error_code("ValueError", "x")
    with pytest.raises(mlobs.ConfigError):
        mlobs.register_error_code(ValueError, "")
    with pytest.raises(mlobs.ConfigError):
        mlobs.register_classifier("not callable")
    with pytest.raises(mlobs.ConfigError):
        mlobs.ComponentError("")
