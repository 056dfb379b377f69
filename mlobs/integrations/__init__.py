"""Auto-instrumentation of the frameworks pipelines run on (each module imports its
framework, so import only the one you use: ``from mlobs.integrations import celery``)."""
