"""A free TCP port of 127.0.0.1 for a server a test starts."""

import socket


def free_port() -> int:
    """A port nothing listens on right now (the caller's server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
