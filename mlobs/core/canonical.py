"""Canonical JSON and hashing: the one way mlobs turns structured values into digests.

Canonical JSON here means: keys sorted, no insignificant whitespace, UTF-8, and only
JSON types (tuples become lists). Two equal values always give the same bytes, so their
SHA-256 digests can be compared across processes, hosts and Python versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlobs.core.errors import ConfigError


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON encoding of ``value`` as UTF-8 bytes.

    Raises:
        ConfigError: ``value`` holds something JSON cannot represent (a set, an object,
            NaN or infinity, a lone surrogate, nesting too deep), named in the message.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise ConfigError(f"value is not canonical-JSON serialisable: {exc}") from exc


#: Values nobody can change afterwards: a dict of only these needs no deep copy.
_IMMUTABLE_JSON = (str, int, float, bool, type(None))


def json_copy(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only (nested tuples become lists): what a
    record keeps of a value the caller may change afterwards. A dict of plain scalars
    (the common event attributes) is copied shallowly, anything else through JSON.

    Raises:
        ConfigError: as :func:`canonical_json`.
    """
    encoded = canonical_json(value)
    if type(value) is dict and all(type(v) in _IMMUTABLE_JSON for v in value.values()):
        return dict(value)
    return json.loads(encoded)


def sha256_hex(value: Any) -> str:
    """SHA-256 hex digest (64 lowercase hex characters) of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
