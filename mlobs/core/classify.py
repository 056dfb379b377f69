"""Exception → error_code classification (ARCHITECTURE §3; model system rules §7, §8).

Rules are tried newest first; the first one that returns a code wins. Built-in rules:

* ``ComponentError``                         → its ``code``
* ``KeyboardInterrupt``, ``SystemExit``       → ``interrupted`` (never swallowed)
* ``MemoryError`` (numpy's ``_ArrayMemoryError`` included), any class named
  ``OutOfMemoryError`` (torch's, matched by name)              → ``oom``
* tritonclient's ``InferenceServerException``: an OOM message → ``oom``; status or
  message UNAVAILABLE / "failed to connect" / "connection refused" / 503
  → ``triton_unavailable``; DEADLINE_EXCEEDED / 504 → ``timeout``
* ``TimeoutError`` (incl. asyncio/futures)   → ``timeout``
* ``ConnectionError`` (refused, reset, ``http.client.RemoteDisconnected``) → ``transient``
* HTTP 429, 502, 503, 504: ``urllib.error.HTTPError.code``, ``.status_code`` or
  ``.response.status_code`` (requests, httpx), ``.status`` (aiohttp)   → ``transient``
* ``urllib.error.URLError`` whose ``reason`` is a ``ConnectionError`` → ``transient``,
  a ``TimeoutError`` → ``timeout``; ``http.client.IncompleteRead`` → ``transient``
* requests / httpx / httpcore / urllib3 / aiohttp exceptions that do not derive from the
  builtins: a class named ``*Timeout*`` → ``timeout``; ``ConnectionError``,
  ``ConnectError``, ``ServerDisconnectedError``, ... → ``transient`` (TLS/certificate
  errors excepted: retrying does not fix them)
* an OOM message ("out of memory", "can't allocate memory", ONNX Runtime's "Failed to
  allocate memory for requested buffer", BFCArena, TensorRT's "OutOfMemory", cudaMalloc
  failures, ...) on a ``RuntimeError`` or on an exception whose class or module names a
  runtime (``onnxruntime``, ``tensorrt``, ``torch``, ..., classes named ``*Runtime*``,
  ``*Cuda*``, ORT's ``Fail``)                                     → ``oom``
* anything else                              → ``internal``

HTTP 500 and 404 are ``internal``: the server answered, and asking again changes nothing.
Optional libraries are never imported: their exceptions are matched by class name, module
and attributes, stdlib modules only when the program has already imported them.

Users extend it with :func:`register_error_code` (an exception type → code) or
:func:`register_classifier` (a function returning a code or ``None`` to pass).
:func:`is_transient` tells whether a retry may help; :func:`oom_device_kind` and
:func:`requested_bytes` read an OOM exception.
"""

from __future__ import annotations

import concurrent.futures
import math
import re
import sys
import threading
from collections.abc import Callable

from mlobs.core.errors import ComponentError, ConfigError
from mlobs.core.limits import CODE_MAX_CHARS, ERROR_MESSAGE_MAX_CHARS, NAME_MAX_CHARS
from mlobs.core.text import text_of

Classifier = Callable[[BaseException], "str | None"]

#: error codes a retry may cure (model system rules §7: "network/timeout/503");
#: ``model_load_failed`` is never among them.
TRANSIENT_CODES = frozenset({"transient", "timeout", "triton_unavailable"})

#: HTTP statuses that say "try again": too many requests, bad gateway, unavailable, gateway
#: timeout.
_TRANSIENT_HTTP_STATUSES = frozenset({429, 502, 503, 504})

_OOM_MESSAGE = re.compile(
    r"out[ _]of[ _]memory"                 # torch, TF, JAX, CUDA_ERROR_OUT_OF_MEMORY
    r"|\bOutOfMemory\b"                    # TensorRT "Error Code 2: OutOfMemory"
    r"|can't allocate memory|cannot allocate memory"
    r"|failed to allocate memory"          # ONNX Runtime
    r"|OOM when allocating"                # TensorFlow
    r"|CUDNN_STATUS_ALLOC_FAILED|CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation"
    r"|cudaMalloc\w*(?:\(\))?:?\s*(?:failed|returned|error)"
    r"|BFCArena\b.{0,200}?(?:smaller than requested|allocat)"
    r"|GPU memory \(.{0,40}\) could not be allocated|GPU memory allocation failed"
    r"|unable to allocate .{1,40} for an array",
    re.IGNORECASE | re.DOTALL,
)

#: packages whose exceptions may carry an OOM message (matched on the class's module).
_RUNTIME_MODULES = frozenset({
    "onnxruntime", "tensorrt", "tensorrt_bindings", "torch", "torch_tensorrt",
    "tritonclient", "polygraphy", "cupy", "cupy_backends", "pycuda", "cuda", "numba", "jax",
    "jaxlib", "tensorflow", "ctranslate2", "vllm", "triton", "openvino", "paddle",
})
#: class names hinting at a runtime: ORT raises ``RuntimeException``/``Fail``/``EPFail``
#: (not RuntimeError subclasses), JAX ``XlaRuntimeError``, CuPy ``CUDARuntimeError``.
_RUNTIME_CLASS_NAME = re.compile(
    r"Runtime|Cuda|CUDA|Gpu|GPU|^(?:Fail|EPFail|InferenceServerException)$")

_TRITON_UNAVAILABLE = re.compile(
    r"\bUNAVAILABLE\b|(?i:failed to connect|connection refused|service unavailable)")
_TRITON_TIMEOUT = re.compile(r"\bDEADLINE_EXCEEDED\b|(?i:deadline exceeded)")

#: HTTP client packages whose connection/timeout errors do not derive from the builtins.
_HTTP_CLIENT_MODULES = frozenset({"requests", "httpx", "httpcore", "urllib3", "aiohttp"})
_HTTP_CLIENT_TRANSIENT = frozenset({
    "ConnectionError", "ConnectError", "ClientConnectionError", "ClientConnectorError",
    "ServerDisconnectedError", "ClientPayloadError", "RemoteProtocolError", "ReadError",
    "WriteError", "NewConnectionError", "ChunkedEncodingError",
})


def _class_names(exc: BaseException) -> list[tuple[str, str]]:
    """(root package, class name) of each class of ``exc``, most derived first."""
    return [((getattr(cls, "__module__", None) or "").split(".", 1)[0], cls.__name__)
            for cls in type(exc).__mro__]


def _is_instance_of(exc: BaseException, module: str, name: str) -> bool:
    # A stdlib module the program never imported cannot have raised: no import needed.
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, when it carries one as an int."""
    candidates: list[object] = []
    if _is_instance_of(exc, "urllib.error", "HTTPError"):
        candidates.append(getattr(exc, "code", None))
    try:  # attributes of foreign exceptions may be properties that raise
        candidates.append(getattr(exc, "status_code", None))               # httpx, openai
        candidates.append(getattr(getattr(exc, "response", None), "status_code", None))
        candidates.append(getattr(exc, "status", None))                    # aiohttp
    except Exception:
        pass
    for status in candidates:
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            return status
    return None


def _network_code(exc: BaseException) -> str | None:
    """transient/timeout for HTTP and socket failures not derived from the builtins."""
    status = _http_status(exc)
    if status is not None:
        return "transient" if status in _TRANSIENT_HTTP_STATUSES else None
    if _is_instance_of(exc, "urllib.error", "URLError"):
        reason = getattr(exc, "reason", None)
        if isinstance(reason, (TimeoutError, concurrent.futures.TimeoutError)):
            return "timeout"
        if isinstance(reason, ConnectionError):
            return "transient"
        return None
    if _is_instance_of(exc, "http.client", "IncompleteRead"):
        return "transient"
    # Most derived class first: urllib3's NewConnectionError derives from
    # ConnectTimeoutError, requests' ConnectTimeout from ConnectionError.
    for module, name in _class_names(exc):
        if module not in _HTTP_CLIENT_MODULES:
            continue
        if "SSL" in name or "Certificate" in name:  # retrying does not fix TLS
            return None
        if "Timeout" in name:
            return "timeout"
        if name in _HTTP_CLIENT_TRANSIENT:
            return "transient"
    return None


def _triton_code(exc: BaseException) -> str | None:
    """Code of a tritonclient ``InferenceServerException`` (model system rules §7)."""
    try:
        status = exc.status() if callable(getattr(exc, "status", None)) else None
        text = str(exc)
    except Exception:
        return None
    status = "" if status is None else str(status)
    if _OOM_MESSAGE.search(text):
        return "oom"
    if "UNAVAILABLE" in status or status == "503" or _TRITON_UNAVAILABLE.search(text):
        return "triton_unavailable"
    if "DEADLINE_EXCEEDED" in status or status == "504" or _TRITON_TIMEOUT.search(text):
        return "timeout"
    return None


def _names_a_runtime(exc: BaseException) -> bool:
    return any(module in _RUNTIME_MODULES or _RUNTIME_CLASS_NAME.search(name)
               for module, name in _class_names(exc))


def _builtin(exc: BaseException) -> str | None:
    if isinstance(exc, ComponentError):
        return exc.code
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    # torch.cuda.OutOfMemoryError is matched by name so mlobs never imports torch.
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    if any(name == "InferenceServerException" for _, name in _class_names(exc)):
        code = _triton_code(exc)
        if code is not None:
            return code
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "transient"
    code = _network_code(exc)
    if code is not None:
        return code
    # Only runtimes' errors: "memory" in any message must not become an OOM.
    if isinstance(exc, Exception) and _names_a_runtime(exc) and _OOM_MESSAGE.search(str(exc)):
        return "oom"
    return None


_lock = threading.Lock()
_rules: tuple[Classifier, ...] = (_builtin,)


def register_classifier(rule: Classifier) -> None:
    """Add a rule tried before every earlier one.

    Args:
        rule: called with the exception; returns an error_code string, or ``None`` to let
            the next rule decide. A rule that raises is skipped.
    """
    global _rules
    if not callable(rule):
        raise ConfigError("register_classifier needs a callable")
    with _lock:  # copy-on-write: readers never lock
        _rules = (rule, *_rules)


def register_error_code(exc_type: type[BaseException], code: str) -> None:
    """Classify ``exc_type`` (and its subclasses) as ``code``."""
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise ConfigError("register_error_code needs an exception type")
    if not code or not isinstance(code, str):
        raise ConfigError("register_error_code needs a non-empty string code")
    register_classifier(lambda exc: code if isinstance(exc, exc_type) else None)


def classify_exception(exc: BaseException) -> str:
    """The error_code for ``exc``: the first registered rule's answer, else ``internal``."""
    for rule in _rules:
        try:
            code = rule(exc)
        except Exception:  # a broken user rule must not hide the real error
            continue
        if code:
            return str(code)[:CODE_MAX_CHARS]
    return "internal"


def exception_message(exc: BaseException, max_chars: int = ERROR_MESSAGE_MAX_CHARS) -> str:
    """The message recorded for ``exc`` (``error_message``, run warnings, retry events):
    ``str(exc)`` cut to ``max_chars`` (ARCHITECTURE §4: "truncated to a bound").

    An exception whose ``__str__`` raises (e.g. one rebuilt by pickling without its
    constructor's arguments) is described as ``<unprintable Type: Error: why>``, and lone
    surrogates are escaped (:mod:`mlobs.core.text`): reading the message must never replace
    the user's exception nor cost its record.
    """
    return text_of(exc)[:max_chars]


def exception_type_name(exc: BaseException) -> str:
    """The ``error_type`` recorded for ``exc``: its class's ``__qualname__``, safe text
    (lone surrogates escaped, :mod:`mlobs.core.text`) cut to the column's
    :data:`~mlobs.core.limits.NAME_MAX_CHARS`."""
    return text_of(type(exc).__qualname__)[:NAME_MAX_CHARS]


def exception_summary(exc: BaseException, max_chars: int = 500) -> str:
    """``"Type: message"`` of ``exc`` in at most ``max_chars`` characters (for logs and
    ``last_error``-style fields; see :func:`exception_message`)."""
    return f"{type(exc).__name__}: {exception_message(exc, max_chars)}"[:max_chars]


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may cure ``exc``: its error_code is in :data:`TRANSIENT_CODES`.

    Uses the registered rules too. ``model_load_failed``, ``oom`` and ``internal`` are not
    transient (model system rules §7: retry only network/timeout/503).
    """
    return classify_exception(exc) in TRANSIENT_CODES


# -- reading an OOM -------------------------------------------------------------------------

_CPU_OOM = re.compile(r"CPUAllocator|alloc_cpu|\bCPU memory\b", re.IGNORECASE)
_GPU_OOM = re.compile(r"CUDA|\bGPU|cudaMalloc|cuMemAlloc|device memory|VRAM", re.IGNORECASE)


def oom_device_kind(exc: BaseException, default: str = "cpu") -> str:
    """The kind of device an OOM exception ran out of: ``"cuda"`` or ``"cpu"``.

    Meant for exceptions :func:`classify_exception` calls ``oom``; the message decides
    first (torch's "DefaultCPUAllocator" → ``"cpu"``; "CUDA", "GPU", "cudaMalloc",
    "device memory" → ``"cuda"``), then the type (a class named ``OutOfMemoryError``,
    torch.cuda's or CuPy's → ``"cuda"``; ``MemoryError`` → ``"cpu"``).

    Args:
        exc: the exception.
        default: the answer when neither says, e.g. the component's device kind.
    """
    try:
        text = str(exc)
    except Exception:
        text = ""
    if _CPU_OOM.search(text):
        return "cpu"
    if _GPU_OOM.search(text) or type(exc).__name__ == "OutOfMemoryError":
        return "cuda"
    if isinstance(exc, MemoryError):
        return "cpu"
    return default


#: size units: binary (KiB...) and SI (KB = 1000 bytes, as SI defines it).
_UNIT_BYTES = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50, "eib": 2**60,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
_REQUESTED = re.compile(
    r"(?:tried to allocate|trying to allocate|unable to allocate|cannot allocate"
    r"|requested buffer of size|requested bytes of|out of memory allocating"
    r"|requested amount of GPU memory \()"
    r"\s*(?P<number>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[KMGTPE]iB|[kKMGT]B|bytes?|B)?\b",
    re.IGNORECASE,
)


def requested_bytes(exc: BaseException) -> int | None:
    """The size of the allocation that failed, in bytes, when the exception says it.

    Reads numpy's ``_ArrayMemoryError`` exactly, else the message: torch CUDA "Tried to
    allocate 2.00 GiB", torch CPU "you tried to allocate 1073741824 bytes", numpy "Unable
    to allocate 7.45 GiB for an array", ONNX Runtime "requested buffer of size 123456" and
    "smaller than requested bytes of 123456", TensorRT "Requested amount of GPU memory
    (1073741824 bytes)", CuPy "Out of memory allocating 1,024 bytes". Units: B/bytes,
    KiB...EiB (powers of 1024), KB/MB/GB/TB (powers of 1000); none means bytes.

    Returns:
        bytes (rounded to an integer), or ``None`` when the exception does not say.
    """
    total = getattr(exc, "_total_size", None)  # numpy's _ArrayMemoryError knows exactly
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    try:
        match = _REQUESTED.search(str(exc))
    except Exception:
        return None
    if match is None:
        return None
    requested = float(match["number"].replace(",", "")) * _UNIT_BYTES[
        (match["unit"] or "").lower()]
    return round(requested) if math.isfinite(requested) else None  # 400 digits: inf
