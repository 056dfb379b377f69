"""Random record ids: UUID version 4 strings (RFC 9562 §5.4), as ``str(uuid.uuid4())``.

``uuid.uuid4()`` spends most of its ~4.6 µs building the ``UUID`` object and formatting
it; an id is made for every run, component and event (a component's and its events' on
the sinks' thread when the record is built), so this formats random bytes directly. The
bytes come from ``os.urandom``, as ``uuid4``'s do, fetched 256 ids at a time: each
``os.urandom`` call lets go of the GIL, and a sink thread that lets go of it waits for the
pipeline's thread to hand it back (up to CPython's 5 ms switch interval), so one call per
id cost a sink thread a GIL round trip per record. A forked child drops the pool it
inherited, so parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

# The variant field's top two bits are 10: the 17th hex digit is one of 8, 9, a, b.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_POOL_BYTES = 16 * 256

_lock = threading.Lock()
_pool = b""
_offset = 0


def new_uuid4() -> str:
    """A random UUID (version 4, RFC variant) in the canonical 36-character form."""
    global _pool, _offset
    with _lock:
        if _offset >= len(_pool):
            _pool, _offset = os.urandom(_POOL_BYTES), 0
        start = _offset
        _offset = start + 16
        h = _pool[start:start + 16].hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"


def _drop_pool_in_child() -> None:
    global _pool, _offset, _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_drop_pool_in_child)
