"""What runs on the pipeline's thread: ``mlobs.run`` and the run, the component handle and
its :class:`~mlobs.hooks.spec.ComponentSpec`, the decorator, the current run and
component (context), ``configure``/``flush``, analysis profiles, the OOM, retry and
fallback policies, batch sizes, seeding, the run's environment, runs joined from other
processes, and the component cache adapter.

Imported only by the public API, the CLI and the integrations.
"""
