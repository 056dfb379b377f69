"""Helpers shared by the tests (not collected: no ``test_`` modules here).

Importable as ``support`` because pytest puts ``tests/`` on ``sys.path`` (rootdir
conftest, ``prepend`` import mode).
"""
