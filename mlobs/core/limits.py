"""Size bounds of record fields, shared by the API's validation and the warehouse columns."""

#: longest identifier or version (platform_id, video_id, component, producer_version, ...).
NAME_MAX_CHARS = 255
#: longest vocabulary word (error_code, empty_reason, event kind, device).
CODE_MAX_CHARS = 128
#: error_message is truncated to this many characters (ARCHITECTURE §4: "truncated to a bound").
ERROR_MESSAGE_MAX_CHARS = 2000
#: error_traceback is cut to this many characters (its start: the exception is last).
TRACEBACK_MAX_CHARS = 16_000
#: integers in an ``Integer`` column (batch_size, attempt, counts) are below this.
INT32_BOUND = 2**31
#: integers in a ``BigInteger`` column (items, memory peaks) are below this.
INT64_BOUND = 2**63
#: a seed is below this (NumPy's bound; Python's and torch's take it too).
SEED_BOUND = 2**32
#: most labels a run carries (``mlobs.run(labels=...)`` and ``MLOBS_RUN_LABELS`` together).
LABELS_MAX = 32
#: longest label key, in characters (table ``run_labels.key``).
LABEL_KEY_MAX_CHARS = 64
#: longest label value, in characters (table ``run_labels.value``).
LABEL_VALUE_MAX_CHARS = 256
