"""A real local HTTP server that fails on cue, for tests of error classification,
retries and model fallback.

    with FlakyServer({"/v2": ["503", "503", '200:{"score": 0.9}']}) as server:
        urllib.request.urlopen(server.url("/v2"))     # HTTPError 503
        ...
        assert server.count("/v2") == 3
        assert all(gap >= 0.1 for gap in server.gaps("/v2"))

Each path has a script: a list of behaviours, one consumed per request (any method).
A path without a script, or whose script is used up, gets ``default`` (``"404"``).

Behaviours:

* ``"<status>"`` or ``"<status>:<body>"``: answer with that HTTP status and body (e.g.
  ``"503"``, ``"500"``, ``'200:{"score": 0.42}'``); a body starting with ``{`` or ``[``
  is sent as ``application/json``.
* ``"reset"``: read the request, then close the socket abortively (SO_LINGER 0 → RST):
  the client sees ``ConnectionResetError`` instead of a response.
* ``"hang:<seconds>"`` or ``"hang:<seconds>:<behaviour>"``: wait, then behave (default
  ``"200"``): client timeouts. Stopping the server wakes hanging handlers.
* ``"partial:<body>"``: answer 200 with a Content-Length longer than the body, then close:
  the client's read raises ``http.client.IncompleteRead``.

The server listens on 127.0.0.1, on a free port, in a daemon thread.
:func:`refused_port` gives a port where nothing listens (connection refused).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FlakyServer", "Hit", "refused_port"]


@dataclass(frozen=True)
class Hit:
    """One request the server received.

    Args:
        path: the request path without the query string.
        method: ``"GET"``, ``"POST"``, ...
        at_s: ``time.monotonic()`` when its headers were read (seconds).
        behaviour: the behaviour it got.
        body: the request body.
    """

    path: str
    method: str
    at_s: float
    behaviour: str
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    flaky: FlakyServer

    def handle_error(self, request, client_address):
        # A client that gave up (timeout) makes the late write fail: expected, keep quiet.
        self.flaky.handler_errors.append(client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a hit is an attempt

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = urlsplit(self.path).path
        flaky = self.server.flaky
        behaviour = flaky._next_behaviour(path)
        flaky._record(Hit(path, self.command, time.monotonic(), behaviour, body))
        self._behave(behaviour)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def _behave(self, behaviour: str) -> None:
        self.close_connection = True
        kind, _, rest = behaviour.partition(":")
        if kind == "reset":
            self._reset()
        elif kind == "hang":
            seconds, _, then = rest.partition(":")
            if self.server.flaky._stopping.wait(float(seconds)):
                return  # the server is stopping: just close
            self._behave(then or "200")
        elif kind == "partial":
            data = rest.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._answer(int(kind), rest)

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body[:1] in ("{", "[")
                         else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self) -> None:
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket: the fd (and its RST) goes with the last one.
        sock.close()
        self.rfile.close()


class FlakyServer:
    """A scripted HTTP server on 127.0.0.1 (see the module docstring for behaviours).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        script: path → behaviours, consumed one per request in order.
        default: the behaviour of requests no script covers.
    """

    def __init__(self, script: Mapping[str, Iterable[str]] | None = None, *,
                 default: str = "404") -> None:
        self.default = default
        self.handler_errors: list[object] = []
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[str]] = {}
        self._hits: list[Hit] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for path, behaviours in (script or {}).items():
            self.script(path, *behaviours)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FlakyServer:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.flaky = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="flaky-http-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging handlers and close the listening socket."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FlakyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FlakyServer is not started")
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{path}"

    # -- script and what happened ----------------------------------------------------
    def script(self, path: str, *behaviours: str) -> None:
        """Append behaviours to the script of ``path``."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(behaviours)

    def _next_behaviour(self, path: str) -> str:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else self.default

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def hits(self, path: str | None = None) -> list[Hit]:
        """The requests received (for ``path``, or all), in arrival order."""
        with self._lock:
            return [h for h in self._hits if path is None or h.path == path]

    def count(self, path: str | None = None) -> int:
        """How many requests reached ``path`` (or the server)."""
        return len(self.hits(path))

    def gaps(self, path: str | None = None) -> list[float]:
        """Seconds between consecutive requests to ``path`` (or to the server)."""
        times = [h.at_s for h in self.hits(path)]
        return [b - a for a, b in zip(times, times[1:])]


@contextmanager
def refused_port() -> Iterator[int]:
    """A port of 127.0.0.1 where a connection is refused, for the ``with`` block.

    The port is bound but not listening, so nothing else can take it meanwhile and the
    kernel answers a connection attempt with RST (``ConnectionRefusedError``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
