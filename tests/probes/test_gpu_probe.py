"""GPU memory probes (mlobs.probes.gpu).

Three kinds of test:

* real behaviour on any machine: torch not imported (subprocess), torch imported without
  CUDA, NVML without a driver;
* GPU tests (``cuda_torch`` fixture: skipped without a CUDA device) that measure real
  allocations, overlapping components and a real CUDA OOM;
* LOGIC tests, few and named ``test_logic_*``: the per-device active counting and the
  NVML bookkeeping, with a small fake torch / pynvml handed in through ``gpu._modules`` /
  the ``NvmlReader`` constructor. They check mlobs's bookkeeping, not torch or NVML.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from mlobs.core.classify import classify_exception
from mlobs.probes import gpu, gpu_oom

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_active_components():
    """Every test starts and ends with no component counted as active on a GPU."""
    gpu._active_by_device.clear()
    gpu._pending.clear()
    yield
    assert gpu._active_by_device == {} and not gpu._pending, "a token leaked"


def _run_python(code: str, tmp_path) -> str:
    env = dict(os.environ, MLOBS_ROOT=str(tmp_path / "mlobs-data"))
    env.pop("MLOBS_DB_URL", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _nvml_driver_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


# -- any machine ----------------------------------------------------------------------------

def test_a_component_does_not_import_torch(tmp_path):
    out = _run_python("""
        import sys
        import mlobs
        from mlobs.probes import gpu, gpu_oom
        from mlobs.testing import capture

        with capture() as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", device="cuda:0"):
                    token = gpu.cuda_start("cuda:0")
                    peaks = gpu.cuda_end(token)
                    assert gpu.cuda_start(None) is None
                    gpu_oom.release_gpu_cache()
                    gpu_oom.cuda_memory_snapshot(None)
                    gpu_oom.cuda_free_bytes("cuda:0")
        assert rec.component("asr").status == "ok"
        assert token is None and peaks == (None, None)
        assert "torch" not in sys.modules, "mlobs imported torch"
        print("OK")
    """, tmp_path)
    assert out.strip().endswith("OK")


def test_torch_without_cuda_gives_no_token_and_never_touches_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.version.cuda is not None or torch.version.hip is not None:
        pytest.skip("a CUDA/ROCm build of torch: the GPU tests cover it")

    def forbidden() -> bool:
        raise AssertionError("is_available() initializes CUDA: mlobs must not call it")

    monkeypatch.setattr(torch.cuda, "is_available", forbidden)
    assert gpu.cuda_start(None) is None
    assert gpu.cuda_start("cuda:0") is None
    assert gpu.cuda_end(None) == (None, None)
    assert gpu._no_cuda_torch is torch

    # Remembered per torch module: later calls do not even ask is_initialized().
    calls = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: calls.append(1) or False)
    for _ in range(1000):
        assert gpu.cuda_start(None) is None
    assert calls == []

    gpu_oom.release_gpu_cache()
    snapshot, free = gpu_oom.cuda_memory_snapshot("cuda:0"), gpu_oom.cuda_free_bytes("cuda:0")
    if gpu.open_nvml() is None:
        assert snapshot == {} and free is None
    monkeypatch.undo()
    assert not torch.cuda.is_initialized()


def test_open_nvml_never_raises_and_is_cached():
    reader = gpu.open_nvml()
    if not _nvml_driver_present():
        assert reader is None  # this machine: no libnvidia-ml
    else:
        assert reader is not None and reader.device_count >= 1
        assert isinstance(reader.process_used_bytes(), int)
    assert gpu.open_nvml() is reader


def test_open_nvml_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    monkeypatch.setattr(gpu, "_nvml_cache", None)
    assert gpu.open_nvml() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_child_forgets_the_parents_nvml_and_counts():
    gpu.open_nvml()
    generation = gpu._generation
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = (gpu._nvml_cache is None and gpu._generation == generation + 1
              and gpu._active_by_device == {} and not gpu._pending)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gpu._nvml_cache is not None and gpu._nvml_cache[0] == os.getpid()


def test_device_strings():
    assert gpu.parse_device("cuda:1") == 1
    assert gpu.parse_device("cuda") == gpu.CURRENT_DEVICE
    assert gpu.parse_device("CUDA:0") == 0
    assert gpu.parse_device("cpu") is None
    assert gpu.parse_device("cuda:x") is None


# -- LOGIC tests: a fake torch.cuda ------------------------------------------------------------

class FakeCuda:
    """torch.cuda's peak bookkeeping: per device, current and peak allocated bytes."""

    def __init__(self, devices: int = 2, initialized: bool = True) -> None:
        self.initialized = initialized
        self.current = [0] * devices
        self.peak = [0] * devices
        self.resets: list[int] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return len(self.current)

    def current_device(self) -> int:
        assert self.initialized, "current_device() would initialize CUDA"
        return 0

    def reset_peak_memory_stats(self, index: int) -> None:
        self.resets.append(index)
        self.peak[index] = self.current[index]

    def memory_allocated(self, index: int) -> int:
        return self.current[index]

    def memory_stats_as_nested_dict(self, index: int) -> dict:
        peak = {"all": {"peak": self.peak[index]}}
        return {"allocated_bytes": peak, "reserved_bytes": peak}

    def allocate(self, index: int, n: int) -> None:
        self.current[index] += n
        self.peak[index] = max(self.peak[index], self.current[index])

    def free(self, index: int, n: int) -> None:
        self.current[index] -= n


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    cuda = FakeCuda()
    torch = SimpleNamespace(cuda=cuda, version=SimpleNamespace(cuda="12.4", hip=None))
    monkeypatch.setattr(gpu, "_modules", {"torch": torch})
    return cuda


def test_logic_overlapping_components_never_lose_a_peak(fake_cuda):
    a = gpu.cuda_start("cuda:0")
    fake_cuda.allocate(0, 500)
    fake_cuda.free(0, 500)
    b = gpu.cuda_start("cuda:0")  # A is active on device 0: no reset
    other_device = gpu.cuda_start("cuda:1")  # device 1 is free: reset
    fake_cuda.allocate(0, 100)
    fake_cuda.free(0, 100)
    assert gpu.cuda_end(b) == (500, 500)  # the union of A and B: over, not under
    assert gpu.cuda_end(a) == (500, 500)  # B's start did not erase A's peak
    assert gpu.cuda_end(other_device) == (0, 0)
    assert gpu.cuda_end(a) == (None, None)  # ending twice changes nothing
    assert fake_cuda.resets == [0, 1]
    c = gpu.cuda_start("cuda")  # nobody active any more: a fresh peak
    fake_cuda.allocate(0, 50)
    assert gpu.cuda_end(c) == (50, 50)
    assert fake_cuda.resets == [0, 1, 0]


def test_logic_the_start_is_recorded_only_where_the_peak_was_reset_at_it(fake_cuda):
    fake_cuda.allocate(0, 1000)  # a model already on the GPU
    alone = gpu.cuda_start("cuda:0")
    assert alone.allocated_at_start_bytes == 1000  # the peak counts from here
    fake_cuda.allocate(0, 300)
    fake_cuda.free(0, 300)
    inner = gpu.cuda_start("cuda:0")  # no reset: the peak may be the outer one's
    assert inner.allocated_at_start_bytes is None
    assert gpu.cuda_end(inner) == (1300, 1300)
    assert gpu.cuda_end(alone) == (1300, 1300)


def test_logic_a_component_on_every_device_sums_them(fake_cuda):
    everywhere = gpu.cuda_start(None)
    fake_cuda.allocate(0, 300)
    one = gpu.cuda_start("cuda:1")  # device 1 is counted by `everywhere`: no reset
    fake_cuda.allocate(1, 200)
    fake_cuda.free(1, 200)
    assert gpu.cuda_end(one) == (200, 200)
    assert gpu.cuda_end(everywhere) == (500, 500)
    assert fake_cuda.resets == [0, 1]


def test_logic_started_before_cuda_initialization(fake_cuda):
    fake_cuda.initialized = False
    early = gpu.cuda_start(None)
    assert early is not None and fake_cuda.resets == []  # nothing touched, nothing reset
    fake_cuda.initialized = True  # the component initialized CUDA and allocated
    fake_cuda.allocate(0, 300)
    fake_cuda.free(0, 300)
    later = gpu.cuda_start("cuda:0")  # `early` is active: its peak must survive
    assert gpu.cuda_end(later) == (300, 300)
    assert gpu.cuda_end(early) == (300, 300)
    assert fake_cuda.resets == []

    fake_cuda.initialized = False
    never = gpu.cuda_start("cuda:0")
    assert gpu.cuda_end(never) == (None, None)  # CUDA never initialized: no numbers


# -- LOGIC tests: a fake pynvml -------------------------------------------------------------

class FakeNvml:
    """Four devices; process lists per device (a list, or an exception to raise)."""

    uuids = ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-bbcc-3", "GPU-dddd-4"]

    def __init__(self, compute=None, graphics=None) -> None:
        self.compute, self.graphics = compute or {}, graphics or {}

    def nvmlDeviceGetCount(self) -> int:
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.uuids[handle]

    @staticmethod
    def _processes(table: dict, handle: int) -> list:
        found = table.get(handle, [])
        if isinstance(found, Exception):
            raise found
        return found

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list:
        return self._processes(self.compute, handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list:
        return self._processes(self.graphics, handle)


@pytest.mark.parametrize("visible, expected", [
    (None, [0, 1, 2, 3]),
    ("2,0", [2, 0]),
    ("GPU-aaaa", [0]),
    ("GPU-bbcc-3,1", [2, 1]),
    ("GPU-bb", []),          # ambiguous prefix: CUDA stops there
    ("1,7,2", [1]),          # an invalid index ends the list
    ("-1", []),
    ("", []),
    ("MIG-0123", [0, 1, 2, 3]),  # not understood: every device
])
def test_logic_cuda_visible_devices(visible, expected):
    assert gpu._visible_handles(FakeNvml(), visible) == expected


def test_logic_process_used_bytes_counts_this_process_once_per_instance():
    me, other = os.getpid(), os.getpid() + 1

    def process(pid, used, instance=0xFFFFFFFF):
        return SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=instance,
                               computeInstanceId=instance)

    nvml = FakeNvml(
        compute={0: [process(me, 100 * MIB), process(other, 900 * MIB)],
                 1: [process(me, 40 * MIB, instance=1), process(me, 60 * MIB, instance=2)],
                 2: [process(me, None)]},
        graphics={0: [process(me, 100 * MIB)],  # same context seen twice: counted once
                  1: RuntimeError("NVML_ERROR_NOT_SUPPORTED")})
    assert gpu.NvmlReader(nvml, [0, 1, 2]).process_used_bytes() == 200 * MIB
    assert gpu.NvmlReader(nvml, [3]).process_used_bytes() == 0
    failing = FakeNvml(compute={0: RuntimeError("gone")}, graphics={0: RuntimeError("gone")})
    assert gpu.NvmlReader(failing, [0]).process_used_bytes() is None


# -- a real GPU -------------------------------------------------------------------------------

@pytest.fixture
def cuda_torch():
    """torch with CUDA initialized on device 0; skips without a CUDA device."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.cuda.set_device(0)
    torch.cuda.init()
    yield torch
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def test_gpu_peak_of_a_component_and_its_neighbour(cuda_torch):
    torch = cuda_torch
    neighbour = gpu.cuda_start("cuda:0")
    block = torch.empty(512 * MIB, dtype=torch.uint8, device="cuda:0")
    del block
    neighbour_allocated, _ = gpu.cuda_end(neighbour)

    baseline = torch.cuda.memory_allocated(0)
    token = gpu.cuda_start("cuda:0")
    tensor = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda:0")
    allocated, reserved = gpu.cuda_end(token)
    del tensor

    assert allocated == pytest.approx(torch.cuda.max_memory_allocated(0), rel=0.05)
    assert 256 * MIB <= allocated - baseline < 256 * MIB + 16 * MIB  # not the 512 MiB
    assert reserved >= allocated
    assert neighbour_allocated >= 512 * MIB


def test_gpu_overlapping_components_keep_their_peaks(cuda_torch):
    torch = cuda_torch
    baseline = torch.cuda.memory_allocated(0)
    first = gpu.cuda_start("cuda:0")
    block = torch.empty(384 * MIB, dtype=torch.uint8, device="cuda:0")
    del block
    second = gpu.cuda_start(None)  # would erase first's peak if it reset device 0
    second_allocated, _ = gpu.cuda_end(second)
    first_allocated, _ = gpu.cuda_end(first)
    assert first_allocated - baseline >= 384 * MIB
    assert second_allocated >= first_allocated  # the union: an over-estimate


def test_gpu_component_that_initializes_cuda_itself(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = _run_python("""
        import torch
        from mlobs.probes import gpu, gpu_oom

        token = gpu.cuda_start(None)
        assert token is not None
        assert not torch.cuda.is_initialized(), "cuda_start initialized CUDA"
        tensor = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda:0")
        allocated, reserved = gpu.cuda_end(token)
        assert allocated >= 256 * 2**20, allocated
        assert abs(allocated - torch.cuda.max_memory_allocated(0)) <= 0.05 * allocated
        assert reserved >= allocated
        print("OK")
    """, tmp_path)
    assert out.strip().endswith("OK")


def test_gpu_a_real_oom_is_raised_then_snapshotted_and_released(cuda_torch):
    torch = cuda_torch
    _, total_bytes = torch.cuda.mem_get_info(0)
    with pytest.raises(torch.cuda.OutOfMemoryError) as raised:
        torch.empty(4 * total_bytes, dtype=torch.uint8, device="cuda:0")
    assert classify_exception(raised.value) == "oom"

    kept = torch.empty(64 * MIB, dtype=torch.uint8, device="cuda:0")
    snapshot = gpu_oom.cuda_memory_snapshot("cuda:0")
    assert snapshot["device_index"] == 0
    assert snapshot["total_bytes"] == total_bytes
    assert 0 < snapshot["free_bytes"] <= total_bytes
    assert snapshot["reserved_bytes"] >= snapshot["allocated_bytes"] >= 64 * MIB

    freed = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda:0")
    del freed  # cached by torch's allocator until empty_cache()
    cached_before = torch.cuda.memory_reserved(0)
    gpu_oom.release_gpu_cache()
    assert torch.cuda.memory_reserved(0) <= cached_before - 256 * MIB
    free_bytes = gpu_oom.cuda_free_bytes("cuda:0")
    assert 0 < free_bytes <= total_bytes
    assert gpu_oom.cuda_free_bytes("cpu") is None
    del kept


def test_gpu_nvml_sees_this_process(cuda_torch):
    torch = cuda_torch
    reader = gpu.open_nvml()
    assert reader is not None, "a CUDA machine without a working NVML"
    _, total_bytes = torch.cuda.mem_get_info(0)
    info = reader.memory_info(0)
    assert info["total_bytes"] == pytest.approx(total_bytes, rel=0.05)
    assert info["free_bytes"] + info["used_bytes"] <= info["total_bytes"] * 1.01
    facts = reader.devices()[0]
    assert facts["name"] == torch.cuda.get_device_name(0)
    major, minor = torch.cuda.get_device_capability(0)
    assert facts["compute_capability"] == f"{major}.{minor}"

    tensor = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    used = reader.process_used_bytes()
    assert used is not None
    if used == 0:
        pytest.skip("NVML lists no memory for this pid (a PID namespace hides it)")
    assert used >= 256 * MIB
    del tensor
