"""Random record ids: UUID version 4 strings (RFC 9562 §5.4), as ``str(uuid.uuid4())``.

``uuid.uuid4()`` spends most of its ~4.6 µs building the ``UUID`` object and formatting
it; an id is made for every run, component and event (a component's and its events' on
the sinks' thread when the record is built), so this formats
``os.urandom(16)`` directly (~1.7 µs, measured on the CI machine, Python 3.11). The random
bits come from the same source; ``os.urandom`` per call keeps forked children apart.
"""

from __future__ import annotations

from os import urandom

# The variant field's top two bits are 10: the 17th hex digit is one of 8, 9, a, b.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_uuid4() -> str:
    """A random UUID (version 4, RFC variant) in the canonical 36-character form."""
    h = urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:]}"
