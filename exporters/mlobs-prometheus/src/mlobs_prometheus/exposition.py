"""Getting the metrics out: an HTTP ``/metrics`` server, and pushes to a Pushgateway.

The HTTP server is shared per (address, port) within a process: ``mlobs.configure()``
builds the new sinks before it shuts the old ones down, so a new sink must take over the
port its predecessor still holds. :func:`serve` points the server at the newest registry;
:meth:`Exposition.release` stops it only when no newer sink has taken it over.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import push_to_gateway, start_http_server

_lock = threading.Lock()
# (pid, addr, port asked for) → the server serving it in this process.
_servers: dict[tuple[int, str, int], _SharedServer] = {}


class _Forwarding:
    """A collector standing for whichever registry the server serves now."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def collect(self) -> Iterator[Any]:
        return self.target.collect()

    def restricted_registry(self, names: Any) -> Any:  # the ``name[]`` query parameter
        return self.target.restricted_registry(names)


class _SharedServer:
    def __init__(self, addr: str, port: int, registry: Any) -> None:
        self.forwarding = _Forwarding(registry)
        # any object with collect() will do for the server, as for generate_latest
        self.httpd, self.thread = start_http_server(
            port, addr=addr, registry=self.forwarding)  # type: ignore[arg-type]
        self.port: int = self.httpd.server_address[1]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class Exposition:
    """A sink's hold on a shared HTTP server (see :func:`serve`)."""

    def __init__(self, key: tuple[int, str, int], server: _SharedServer, registry: Any) -> None:
        self._key = key
        self._server = server
        self._registry = registry

    @property
    def port(self) -> int:
        """The port the server listens on (the chosen one when 0 was asked for)."""
        return self._server.port

    def release(self) -> None:
        """Stop the server, unless a newer sink serves its own registry on it."""
        with _lock:  # held while stopping, so a new sink cannot bind the port meanwhile
            if self._server.forwarding.target is not self._registry:
                return
            if _servers.get(self._key) is self._server:
                del _servers[self._key]
            self._server.stop()


def serve(addr: str, port: int, registry: Any) -> Exposition:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread.

    Args:
        addr: listening address, e.g. ``"127.0.0.1"``.
        port: TCP port; 0 picks a free one (see :attr:`Exposition.port`).
        registry: a ``CollectorRegistry`` (or any collector with ``collect()``).

    Raises:
        OSError: the port cannot be bound (in use, not permitted).
    """
    key = (os.getpid(), addr, port)
    with _lock:
        server = _servers.get(key) if port else None
        if server is None:
            server = _SharedServer(addr, port, registry)
            if port:
                _servers[key] = server
        else:
            server.forwarding.target = registry
    return Exposition(key, server, registry)


def push(gateway: str, job: str, registry: Any, *, grouping_key: dict[str, str],
         timeout_s: float) -> None:
    """Replace this job's (and grouping key's) metrics on the Pushgateway with ``registry``.

    Uses ``PUT`` (``push_to_gateway``): the registry holds this process's cumulative values,
    so each push carries all of them and replaces the previous one.

    Raises:
        OSError: the Pushgateway cannot be reached or answered an error
            (``urllib.error.URLError`` and ``HTTPError`` are OSErrors).
    """
    push_to_gateway(gateway, job=job, registry=registry, grouping_key=grouping_key or None,
                    timeout=timeout_s)
