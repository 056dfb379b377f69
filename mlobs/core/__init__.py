"""The shared vocabulary every stage speaks: errors (errors only), argument checks and
bounds, the records and the ``Recordable`` contract sinks rely on, canonical JSON, the
model signature and idempotency key, error-code classification, settings, paths, atomic
files, the manifest document and the run context that travels to other processes.

Imports nothing else of mlobs (``tests/packaging/test_layers.py``).
"""
