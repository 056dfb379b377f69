"""The public API: what ``import mlobs`` offers is exactly ``mlobs.__all__``, documented."""

from __future__ import annotations

import inspect
import re
import types

import mlobs
import mlobs.core.errors as errors


def test_all_is_sorted_and_is_exactly_the_public_names():
    assert mlobs.__all__ == sorted(mlobs.__all__)
    # dir(), not vars(): most names are imported on first use (tests/packaging/
    # test_lazy_imports.py), and getattr() imports them.
    public = {name for name in dir(mlobs) if not name.startswith("_")
              and not isinstance(getattr(mlobs, name), types.ModuleType)}
    assert set(mlobs.__all__) == public | {"__version__"}


def test_every_public_name_has_a_docstring():
    undocumented = [name for name in mlobs.__all__ if name != "__version__"
                    and not inspect.getdoc(getattr(mlobs, name))]
    assert undocumented == []


def test_every_error_is_in_the_hierarchy_the_docstring_draws():
    drawn = set(re.findall(r"^\s*[│├└─ ]*(\w+(?:Error|Failed)|Empty)\b", errors.__doc__,
                           re.M))
    defined = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, Exception)}
    assert drawn == defined
    assert all(issubclass(getattr(errors, n), errors.MlobsError) for n in defined - {"Empty"})


def test_errors_module_holds_errors_only():
    functions = [name for name, value in vars(errors).items()
                 if inspect.isfunction(value) and value.__module__ == errors.__name__
                 and not name.startswith("_")]
    assert functions == []
