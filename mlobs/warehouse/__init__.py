"""The SQL warehouse: typed models, engine setup, Alembic migrations and the store.

Modules: ``models`` (tables), ``engine`` (connections), ``migrate`` (schema revisions),
``store`` (writing and reading records). Nothing here runs a migration on import.
"""
