"""Every third-party module a distribution imports at load time is one it declares.

The test environment holds many packages (torch brings filelock, scikit-learn brings
numpy), so a missing declaration only shows on a user's clean install: ``import mlobs``
failing there with ``ModuleNotFoundError``. This reads each module's top-level imports
(imports inside functions and ``try`` blocks are optional by design) and checks them
against the ``pyproject.toml`` of the distribution that ships the module.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

#: (project directory, package source directory, {path prefix: extras it may use})
DISTRIBUTIONS = [
    (ROOT, ROOT / "mlobs", {"mlobs/demo/": ["demo"], "mlobs/integrations/celery.py": ["celery"],
                            "mlobs/web/": ["web"]}),
    (ROOT / "exporters" / "mlobs-otel", ROOT / "exporters" / "mlobs-otel" / "src", {}),
    (ROOT / "exporters" / "mlobs-prometheus", ROOT / "exporters" / "mlobs-prometheus" / "src",
     {}),
    (ROOT / "dashboards", ROOT / "dashboards" / "src",
     {"src/mlobs_dashboards/lint.py": ["lint"]}),
]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    bare = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _top_level_imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("project, source, extras_by_path", DISTRIBUTIONS,
                         ids=[project.name for project, _, _ in DISTRIBUTIONS])
def test_top_level_imports_are_declared_dependencies(project, source, extras_by_path):
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in meta["dependencies"]} | {_name(meta["name"])}
    optional = {extra: {_name(r) for r in requirements}
                for extra, requirements in meta.get("optional-dependencies", {}).items()}
    owners = packages_distributions()
    local = {p.name for p in source.iterdir() if p.is_dir()} | {"mlobs"}
    undeclared = []
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(project).as_posix()
        allowed = set(declared)
        for prefix, extras in extras_by_path.items():
            if relative.startswith(prefix):
                for extra in extras:
                    allowed |= optional[extra]
        for module in sorted(_top_level_imports(path)):
            if module in sys.stdlib_module_names or module in local:
                continue
            distributions = {_name(d) for d in owners.get(module, [module])}
            if not distributions & allowed:
                undeclared.append(f"{relative} imports {module} ({', '.join(distributions)})")
    assert not undeclared, "not declared in pyproject.toml: " + "; ".join(undeclared)
