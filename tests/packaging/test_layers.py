"""The import structure: one direction between the stage packages, and no import circle.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` counts,
those inside functions and under ``if TYPE_CHECKING:`` too. The layers (importer →
what it may import) are the data flow of ``docs/architecture-notes.md``: everything may
import ``core``, which imports nothing else of mlobs; the write path ``hooks`` →
``recording`` → ``sinks`` → ``warehouse``; the read side ``analysis`` → ``warehouse``,
``housekeeping`` → ``warehouse`` and ``cache``; ``cli`` and ``web`` on top. Nothing
imports ``cli``, ``web`` or ``hooks`` but the public API (``mlobs/__init__.py``), the CLI
and ``integrations``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "mlobs"

_LIBRARIES = {"core", "probes", "cache"}  # used by the stages, above core only
_WRITE_PATH = {"recording", "sinks", "warehouse"} | _LIBRARIES
#: layer → the layers it may import (besides itself). Below the top, only the arrows the
#: code uses: a new one (hooks reading the warehouse, say) is a decision, not a slip.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "probes": {"core"},
    "cache": {"core"},
    "warehouse": {"core"},
    "sinks": {"warehouse", "core"},
    "recording": {"sinks", "probes", "cache", "core"},
    # setup.py names the sink types of configure(extra_sinks=...) and sink_stats()
    "hooks": {"recording", "sinks", "probes", "cache", "core"},
    "analysis": {"warehouse", "core"},
    "housekeeping": {"warehouse", "cache", "core"},
    "integrations": {"api", "hooks"} | _WRITE_PATH,
    "testing": {"recording", "sinks", "core"},
    "demo": {"api", "warehouse", "cache", "core"},
    "api": {"hooks", "analysis", "housekeeping", "integrations", "testing", "demo"}
    | _WRITE_PATH,
    "cli": {"api", "hooks", "analysis", "housekeeping", "integrations", "testing", "demo",
            "web"} | _WRITE_PATH,
    "web": {"api", "hooks", "analysis", "housekeeping", "integrations", "testing", "demo"}
    | _WRITE_PATH,
    # the exporter distributions are sinks of their own (exporters/*/src)
    "exporters": {"api", "sinks", "core"},
    # migrations/ ships inside the wheel as mlobs/_migrations
    "migrations": {"warehouse", "core"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_only_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imported_modules(path: Path, known: set[str], *, runtime_only: bool = False
                     ) -> list[tuple[str, int]]:
    """The mlobs modules ``path`` imports (``from mlobs.x import y`` is ``mlobs.x.y`` when
    that is a module), with the line of each import; ``runtime_only`` leaves out those
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_only_lines(tree) if runtime_only else set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in known else node.module, node.lineno))
    return [(name, line) for name, line in found
            if (name == "mlobs" or name.startswith("mlobs.")) and line not in skip]


def layer_of(module: str) -> str:
    """``mlobs`` → ``api``; ``mlobs.core.errors`` → ``core``; ``mlobs.testing`` → ``testing``."""
    parts = module.split(".")
    return "api" if len(parts) == 1 else parts[1]


def upward_imports() -> list[str]:
    modules = package_modules()
    known = set(modules)
    sources = [(name, layer_of(name), path) for name, path in modules.items()]
    sources += [(str(p.relative_to(REPO)), "exporters", p)
                for p in sorted(REPO.glob("exporters/*/src/**/*.py"))]
    sources += [(str(p.relative_to(REPO)), "migrations", p)
                for p in sorted((REPO / "migrations").rglob("*.py"))]
    wrong = []
    for importer, layer, path in sources:
        assert layer in ALLOWED, f"{importer}: package {layer!r} has no place in the layers"
        for imported, line in imported_modules(path, known):
            target = layer_of(imported)
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {layer} → {target} "
                             f"({imported})")
    return wrong


def import_cycles() -> list[list[str]]:
    """Strongly connected groups (Tarjan) of two or more modules, every import that runs
    counted (inside functions too; type-only ones cannot form a loop at runtime, and
    across packages the layer test already refuses them)."""
    modules = package_modules()
    known = set(modules)
    graph = {name: sorted({m for m, _ in imported_modules(path, known, runtime_only=True)
                           if m in known and m != name})
             for name, path in modules.items()}
    # ``import mlobs.x`` runs mlobs/__init__.py first; that implicit edge is not an arrow
    # of the code, and the public API imports every stage, so it is left out.
    graph = {name: [m for m in targets if m != "mlobs"] for name, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def test_imports_point_down_the_data_flow():
    wrong = upward_imports()
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_circle():
    assert import_cycles() == []


def test_at_most_eight_loose_modules_and_none_over_500_lines():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 8, loose
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 530}
    assert long == {}
