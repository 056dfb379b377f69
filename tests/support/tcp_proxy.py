"""A local TCP proxy a test can cut and restore, to make a database "go away".

    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        url = make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
        ...
        proxy.cut()       # every open connection is closed; new ones are refused
        ...
        proxy.restore()   # new connections are forwarded again (same port)

The proxy listens on 127.0.0.1 on a free port (chosen at the first start and kept across
cut/restore) and forwards each accepted connection to ``upstream`` with two pump threads.
``cut`` closes the listening socket (clients get "connection refused" at once) and every
open connection (clients see the connection lost). Everything runs in daemon threads.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections = 0  # accepted since the start
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,),
                                               daemon=True, name="tcp-proxy-accept")
        self._accept_thread.start()
        return self

    def cut(self) -> None:
        """Refuse new connections and close every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        """Accept and forward connections again, on the same port."""
        if self._listener is None:
            self.start()

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def close(self) -> None:
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start() if self._listener is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- threads -------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            if self._listener is not listener:
                _close(client)
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.update((client, server))
                self.connections += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True,
                                 name="tcp-proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
