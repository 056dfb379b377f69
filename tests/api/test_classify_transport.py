"""Classification of transport, inference-server and runtime OOM errors.

HTTP and socket failures are real: urllib against a scripted local server
(:mod:`support.flaky_server`). Optional libraries (tritonclient, onnxruntime, requests,
httpx, aiohttp) are not dependencies: their exceptions are small classes named, shaped and
worded like the real ones, which is all the classifier looks at.
"""

import urllib.error
import urllib.request

import pytest

import mlobs
from mlobs.core import classify
from mlobs.core.classify import (
    TRANSIENT_CODES,
    classify_exception,
    is_transient,
    oom_device_kind,
    requested_bytes,
)
from support.flaky_server import FlakyServer, refused_port

GIB = 2**30


@pytest.fixture(autouse=True)
def _restore_rules(monkeypatch):
    """Rules registered by a test are forgotten after it."""
    monkeypatch.setattr(classify, "_rules", classify._rules)


@pytest.fixture
def server():
    with FlakyServer() as s:
        yield s


def urlopen_error(url: str, timeout_s: float = 5.0) -> BaseException:
    """The exception urllib raises fetching ``url`` (the body is read too)."""
    with pytest.raises(Exception) as info:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
    return info.value


# -- urllib against a real server ---------------------------------------------------------

@pytest.mark.parametrize("status, code", [
    ("503", "transient"), ("502", "transient"), ("504", "transient"), ("429", "transient"),
    ("500", "internal"), ("404", "internal"), ("400", "internal"),
])
def test_http_statuses(server, status, code):
    server.script("/predict", f'{status}:{{"error": "scripted"}}')
    exc = urlopen_error(server.url("/predict"))
    assert isinstance(exc, urllib.error.HTTPError) and exc.code == int(status)
    assert classify_exception(exc) == code
    assert is_transient(exc) is (code in TRANSIENT_CODES)
    assert server.count("/predict") == 1


def test_connection_refused_is_transient():
    with refused_port() as port:
        exc = urlopen_error(f"http://127.0.0.1:{port}/predict")
    assert isinstance(exc, urllib.error.URLError)
    assert isinstance(exc.reason, ConnectionRefusedError)
    assert classify_exception(exc) == "transient"


def test_connection_reset_is_transient(server):
    server.script("/predict", "reset")
    exc = urlopen_error(server.url("/predict"))
    assert isinstance(exc, ConnectionError)  # reset by peer, or RemoteDisconnected
    assert classify_exception(exc) == "transient"
    assert server.count("/predict") == 1


def test_truncated_body_is_transient(server):
    server.script("/predict", 'partial:{"score": 0.')
    exc = urlopen_error(server.url("/predict"))
    assert type(exc).__name__ == "IncompleteRead"
    assert classify_exception(exc) == "transient"


def test_client_timeout_is_timeout(server):
    server.script("/predict", "hang:5")
    exc = urlopen_error(server.url("/predict"), timeout_s=0.2)
    assert isinstance(exc, TimeoutError)
    assert classify_exception(exc) == "timeout"


def test_urlerror_reasons():
    # urllib wraps errors raised while connecting/sending in URLError(reason); a connect
    # timeout cannot be provoked reliably on loopback, so this one is built by hand.
    assert classify_exception(urllib.error.URLError(TimeoutError("timed out"))) == "timeout"
    assert classify_exception(urllib.error.URLError(ConnectionResetError())) == "transient"
    assert classify_exception(urllib.error.URLError("unknown url type: ftp")) == "internal"


def test_server_records_attempts_and_gaps(server):
    server.script("/predict", "503", "503", '200:{"score": 1}')
    for _ in range(2):
        assert classify_exception(urlopen_error(server.url("/predict"))) == "transient"
    with urllib.request.urlopen(server.url("/predict"), timeout=5) as response:
        assert response.read() == b'{"score": 1}'
    assert [h.behaviour for h in server.hits("/predict")] == ["503", "503", '200:{"score": 1}']
    assert len(server.gaps("/predict")) == 2 and min(server.gaps("/predict")) >= 0
    assert server.count("/other") == 0


# -- HTTP client libraries, by shape -------------------------------------------------------

def _library_error(module: str, name: str, *bases: type, **attributes):
    cls = type(name, bases or (Exception,), {"__module__": module})
    exc = cls("scripted")
    for key, value in attributes.items():
        setattr(exc, key, value)
    return exc


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


@pytest.mark.parametrize("exc, code", [
    # requests.HTTPError / httpx.HTTPStatusError carry the response
    (_library_error("requests.exceptions", "HTTPError", OSError, response=_Response(503)),
     "transient"),
    (_library_error("httpx", "HTTPStatusError", response=_Response(429)), "transient"),
    (_library_error("httpx", "HTTPStatusError", response=_Response(500)), "internal"),
    (_library_error("requests.exceptions", "HTTPError", OSError, response=None), "internal"),
    # openai-style .status_code, aiohttp ClientResponseError .status
    (_library_error("openai", "APIStatusError", status_code=502), "transient"),
    (_library_error("aiohttp.client_exceptions", "ClientResponseError", status=504),
     "transient"),
    (_library_error("aiohttp.client_exceptions", "ClientResponseError", status=404),
     "internal"),
    # connection/timeout errors that do not derive from the builtins
    (_library_error("requests.exceptions", "ConnectionError", OSError), "transient"),
    (_library_error("requests.exceptions", "ReadTimeout", OSError), "timeout"),
    (_library_error("requests.exceptions", "SSLError", OSError), "internal"),
    (_library_error("httpx", "ConnectError"), "transient"),
    (_library_error("httpx", "ReadTimeout"), "timeout"),
    (_library_error("aiohttp.client_exceptions", "ServerDisconnectedError"), "transient"),
    # the same names outside those packages mean nothing
    (_library_error("myapp.errors", "ConnectError"), "internal"),
])
def test_http_client_library_errors(exc, code):
    assert classify_exception(exc) == code


def test_a_property_that_raises_does_not_hide_the_builtin_rules():
    class RequestError(ConnectionError):  # httpx: .request raises until it is set
        @property
        def response(self):
            raise RuntimeError("no response")

    assert classify_exception(RequestError()) == "transient"


# -- Triton ---------------------------------------------------------------------------------

class InferenceServerException(Exception):
    """Shaped like tritonclient.utils.InferenceServerException."""

    def __init__(self, msg, status=None, debug_details=None):
        self._msg, self._status, self._debug_details = msg, status, debug_details

    def __str__(self):
        return self._msg if self._status is None else f"[{self._status}] {self._msg}"

    def message(self):
        return self._msg

    def status(self):
        return self._status


@pytest.mark.parametrize("exc, code", [
    (InferenceServerException("failed to connect to all addresses; last error: UNKNOWN: "
                              "ipv4:127.0.0.1:8001: Failed to connect to remote host: "
                              "Connection refused", "StatusCode.UNAVAILABLE"),
     "triton_unavailable"),
    (InferenceServerException("Service Unavailable", "503"), "triton_unavailable"),
    (InferenceServerException("failed to connect to all addresses"), "triton_unavailable"),
    (InferenceServerException("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"),
     "timeout"),
    (InferenceServerException("onnx runtime error 6: Non-zero status code returned while "
                              "running Conv node. Status Message: Failed to allocate memory "
                              "for requested buffer of size 4194304",
                              "StatusCode.INTERNAL"), "oom"),
    (InferenceServerException("CUDA out of memory. Tried to allocate 512.00 MiB",
                              "StatusCode.INTERNAL"), "oom"),
    (InferenceServerException("unexpected shape for input 'INPUT0' for model 'resnet'. "
                              "Expected [-1,3,224,224], got [503]",
                              "StatusCode.INVALID_ARGUMENT"), "internal"),
])
def test_triton_errors(exc, code):
    assert classify_exception(exc) == code


# -- OOM from runtimes ----------------------------------------------------------------------

def _ort(name: str):
    """An ONNX Runtime exception class: not a RuntimeError subclass."""
    return type(name, (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})


ORT_ALLOC = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
             "while running MatMul node. Name:'/MatMul' Status Message: /onnxruntime_src/"
             "onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::"
             "AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::"
             "WaitNotificationFn) Failed to allocate memory for requested buffer of size "
             "1073741824")
ORT_ARENA = ("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:317 AllocateRawInternal "
             "BFCArena::AllocateRawInternal Available memory of 0 is smaller than requested "
             "bytes of 33554432")


class RuntimeException(Exception):
    """Named like ORT's RuntimeException, in a test module."""


class Fail(Exception):
    """Named like ORT's Fail."""


@pytest.mark.parametrize("exc, code", [
    (_ort("RuntimeException")(ORT_ALLOC), "oom"),
    (_ort("Fail")(ORT_ARENA), "oom"),
    (RuntimeException(ORT_ALLOC), "oom"),
    (Fail(ORT_ARENA), "oom"),
    (_ort("InvalidArgument")("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid "
                             "dimensions for input"), "internal"),
    # TensorRT (its Python API raises RuntimeError or logs)
    (RuntimeError("[TRT] [E] 2: [executionContext.cpp::enqueueV3::2386] Error Code 2: "
                  "OutOfMemory (no further information)"), "oom"),
    (RuntimeError("[TRT] [E] 1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda "
                  "Runtime (out of memory)"), "oom"),
    (RuntimeError("cudaMalloc failed: cudaErrorMemoryAllocation"), "oom"),
    (RuntimeError("Requested amount of GPU memory (4294967296 bytes) could not be "
                  "allocated. There may not be enough free memory for allocation to "
                  "succeed."), "oom"),
    (type("CUDARuntimeError", (Exception,), {"__module__": "cupy_backends.cuda.api.runtime"})(
        "cudaErrorMemoryAllocation: out of memory"), "oom"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 1073741824 bytes. Error code 12 "
                  "(Cannot allocate memory)"), "oom"),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate("
                  "handle)`"), "oom"),
    # "memory" alone is not an OOM, nor an OOM message on a non-runtime exception
    (RuntimeError("shared memory segment is stale"), "internal"),
    (RuntimeError("cudaMallocAsync is not supported by this driver"), "internal"),
    (ValueError("out of memory budget for the cache: 2 GiB"), "internal"),
    (KeyError("failed to allocate memory"), "internal"),
    (Exception("Failed to allocate memory for requested buffer of size 12"), "internal"),
])
def test_runtime_oom_messages(exc, code):
    assert classify_exception(exc) == code


def test_numpy_array_memory_error_is_a_cpu_oom():
    np = pytest.importorskip("numpy")
    with pytest.raises(MemoryError) as info:
        np.empty((2**40, 2**20), dtype=np.uint8)  # 1 EiB: refused at once, nothing touched
    exc = info.value
    assert classify_exception(exc) == "oom"
    assert oom_device_kind(exc, default="cuda") == "cpu"
    assert requested_bytes(exc) == 2**60


# -- reading an OOM -------------------------------------------------------------------------

class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError."""


TORCH_CUDA = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
              "of 23.65 GiB of which 1.12 GiB is free. Of the allocated memory 20.1 GiB is "
              "allocated by PyTorch")
TORCH_CPU = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
             "memory: you tried to allocate 1073741824 bytes. Error code 12 (Cannot "
             "allocate memory)")


@pytest.mark.parametrize("exc, expected", [
    (OutOfMemoryError(TORCH_CUDA), 2 * GIB),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"), 20 * 2**20),
    (RuntimeError(TORCH_CPU), 1073741824),
    (MemoryError("Unable to allocate 7.45 GiB for an array with shape (1000000000,) and "
                 "data type float64"), round(7.45 * GIB)),
    (_ort("RuntimeException")(ORT_ALLOC), 1073741824),
    (_ort("Fail")(ORT_ARENA), 33554432),
    (RuntimeError("Requested amount of GPU memory (4294967296 bytes) could not be "
                  "allocated."), 4294967296),
    (MemoryError("Out of memory allocating 1,024 bytes (allocated so far: 0 bytes)."), 1024),
    (RuntimeError("Allocator (GPU_0_bfc) ran out of memory trying to allocate 1.50GiB"),
     round(1.5 * GIB)),
    (RuntimeError("Cannot allocate 512KB memory on GPU 0"), 512_000),
    (RuntimeError("Cannot allocate 3MB memory on GPU 0"), 3_000_000),
    (RuntimeError("Cannot allocate 1.5 GB memory on GPU 0"), 1_500_000_000),
    (RuntimeError("tried to allocate 16 KiB"), 16 * 1024),
    (RuntimeError("tried to allocate 1 TiB"), 2**40),
    (RuntimeError("tried to allocate 10 B"), 10),
    (OutOfMemoryError("CUDA out of memory"), None),
    (MemoryError(), None),
    (ValueError("tried to allocate nothing"), None),
    (MemoryError(f"tried to allocate {'9' * 400} bytes"), None),  # beyond a float
])
def test_requested_bytes(exc, expected):
    assert requested_bytes(exc) == expected


@pytest.mark.parametrize("exc, default, kind", [
    (OutOfMemoryError(TORCH_CUDA), "cpu", "cuda"),
    (OutOfMemoryError(""), "cpu", "cuda"),  # torch.cuda.OutOfMemoryError by its name
    (RuntimeError("CUDA error: out of memory"), "cpu", "cuda"),
    (RuntimeError("cudaMalloc failed: out of memory"), "cpu", "cuda"),
    (RuntimeError("Requested amount of GPU memory (4096 bytes) could not be allocated"),
     "cpu", "cuda"),
    (RuntimeError("out of device memory"), "cpu", "cuda"),
    (RuntimeError(TORCH_CPU), "cuda", "cpu"),
    (MemoryError(), "cuda", "cpu"),
    (MemoryError("Unable to allocate 7.45 GiB for an array"), "cuda", "cpu"),
    (_ort("RuntimeException")(ORT_ALLOC), "cuda", "cuda"),  # the message does not say
    (_ort("RuntimeException")(ORT_ALLOC), "cpu", "cpu"),
])
def test_oom_device_kind(exc, default, kind):
    assert oom_device_kind(exc, default=default) == kind


def test_oom_device_kind_defaults_to_cpu():
    assert oom_device_kind(RuntimeError("out of memory")) == "cpu"


# -- transient or not -----------------------------------------------------------------------

def test_transient_codes():
    assert TRANSIENT_CODES == frozenset({"transient", "timeout", "triton_unavailable"})
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(InferenceServerException("x", "StatusCode.UNAVAILABLE"))
    assert not is_transient(mlobs.core.errors.ModelLoadFailed("no weights for v2"))
    assert not is_transient(mlobs.ComponentError("model_load_failed"))
    assert not is_transient(MemoryError())
    assert not is_transient(ValueError("bad input"))
    assert not is_transient(KeyboardInterrupt())


def test_is_transient_follows_registered_rules():
    class FlakyDisk(OSError):
        pass

    assert not is_transient(FlakyDisk())
    mlobs.register_error_code(FlakyDisk, "transient")
    assert is_transient(FlakyDisk())
