"""The SQL warehouse: typed models, engine setup, Alembic migrations and the store.

Modules: ``models`` (tables), ``engine`` (connections), ``migrate`` (schema revisions),
``rows`` (records into checked rows), ``store`` (writing and reading records),
``deletion`` (rows of runs or a video), ``assembly`` (a fanned-out run's manifest from its
rows), ``reuse`` (run-level reuse through ``artifact_index``). Nothing here runs a
migration on import.
"""
