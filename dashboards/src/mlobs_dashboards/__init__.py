"""mlobs's Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6).

One module per dashboard (``overview``, ``component``, ``memory``, ``cache``,
``quality``), each with a ``build()`` returning the SDK's ``Dashboard``; shared panels,
variables and datasources in :mod:`mlobs_dashboards.panels`; the PostgreSQL query type the
SDK lacks in :mod:`mlobs_dashboards.postgres`. :mod:`mlobs_dashboards.generate` writes
them as JSON; ``python -m mlobs_dashboards --help`` says how.
"""
