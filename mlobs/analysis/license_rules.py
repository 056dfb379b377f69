"""The default deny list of ``mlobs licenses check``, alone in a module so the CLI can show
it in ``--help`` without importing the checker (and the warehouse) at start-up."""

#: Deny patterns used unless the caller gives others: licenses that forbid commercial use
#: (Creative Commons NonCommercial variants and licenses that say so in their name) and
#: research-only licenses. ``fnmatch`` globs matched case-insensitively against the whole
#: license cell, so ``*-NC-*`` also catches an expression like ``MIT OR CC-BY-NC-4.0``.
DEFAULT_DENY = ("CC-BY-NC*", "*-NC-*", "*-NC", "*non-commercial*", "*noncommercial*",
                "*non commercial*", "research-only", "*research-only*",
                "*research use only*")
