"""Sinks: the contract and the batching worker, the manifest and warehouse sinks, the
spool that keeps records while the database is away, and ``mlobs ingest``'s loaders.
"""
