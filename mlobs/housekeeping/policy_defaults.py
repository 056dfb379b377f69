"""The defaults of the retention policy (model system rules §6; frames retention §7).

Kept apart from :mod:`mlobs.housekeeping.retention`, which applies them (and re-exports
them), so that ``mlobs gc``'s parser shows them without importing the planner.
"""

from __future__ import annotations

#: runs kept before the latest ``ok`` run of each key.
KEEP_PREVIOUS = 2
#: anything older than this many days goes.
HARD_CAP_DAYS = 60.0
#: registered intermediate directories older than this many days go.
INTERMEDIATE_TTL_DAYS = 7.0
