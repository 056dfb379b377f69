"""Model license inventory: ``MODEL_LICENSES.md`` and the check CI runs on it.

The model system rules ask for a license inventory of every model a pipeline uses, with a
CI check (``mlobs licenses check``). The inventory is a Markdown file holding one table
whose header row names a ``model_name`` column (a second one is an error); it needs the columns
:data:`COLUMNS` (header names compared case-insensitively, any order, extra columns
kept), one row per model::

    | model_name | source       | license    | link                       | restrictions |
    |------------|--------------|------------|----------------------------|--------------|
    | org/model  | Hugging Face | Apache-2.0 | https://huggingface.co/... | none         |

Cells are GitHub-flavoured Markdown table cells: ``|`` inside a cell is written ``\\|``, a
cell wrapped in backticks is read without them, a link may be written ``<URL>`` or
``[text](URL)``. Text outside the table (and tables inside code fences) is ignored.

:func:`check_licenses` checks every model the warehouse has seen (the names in
``model_signatures.models``) and every model the caller declares (e.g. an
:class:`~mlobs.hooks.profile.AnalysisProfile`'s ``models``). A model passes when its row
(``model_name`` compared exactly) has a license that is not a placeholder
(:data:`PLACEHOLDERS`) and matches no deny pattern, and a ``link`` that is an http(s)
URL. Rows of models neither seen nor declared are informational, never failures.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from mlobs.analysis.license_rules import DEFAULT_DENY
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.warehouse.engine import create_warehouse_engine, display_url, require_sqlite_file
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import ModelSignature

#: The columns the inventory table must have (model system rules).
COLUMNS = ("model_name", "source", "license", "link", "restrictions")


#: Cell values that mean "not filled in" (compared case-insensitively): a license cell
#: holding one of these is missing.
PLACEHOLDERS = frozenset({"", "-", "\u2014", "?", "n/a", "na", "none", "unknown", "tbd",
                          "todo"})

OK, FAIL, UNUSED = "ok", "fail", "unused"

_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_MARKDOWN_LINK = re.compile(r"^\[[^\]]*\]\((\S+?)(?:\s+\"[^\"]*\")?\)$")
_FENCE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class LicenseRow:
    """One row of the inventory.

    Args:
        model_name, source, license, link, restrictions: the cells, stripped, with
            ``\\|`` unescaped and wrapping backticks removed.
        line: the row's line number in the file (1-based).
        extra: cells of columns beyond :data:`COLUMNS`, by lower-cased header.
    """

    model_name: str
    source: str
    license: str
    link: str
    restrictions: str
    line: int
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LicenseResult:
    """The verdict on one model.

    Args:
        model: the model name.
        verdict: ``ok``, ``fail``, or ``unused`` (a row of a model neither seen nor
            declared: informational).
        reason: why it failed (empty when ``ok``); for ``unused``, what was found.
        row: its inventory row, None when there is none.
        sources: where the name came from: ``warehouse`` and/or ``declared`` (empty for
            ``unused``).
    """

    model: str
    verdict: str
    reason: str = ""
    row: LicenseRow | None = None
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: model, verdict, reason, sources, license, link, line."""
        return {"model": self.model, "verdict": self.verdict, "reason": self.reason,
                "sources": list(self.sources),
                "license": self.row.license if self.row else None,
                "link": self.row.link if self.row else None,
                "line": self.row.line if self.row else None}


@dataclass
class LicenseReport:
    """What :func:`check_licenses` found.

    Args:
        table_path: the inventory file read.
        results: one per checked model (seen or declared), by model name.
        unused: rows of models neither seen nor declared, by model name.
        warehouse: the warehouse read (password hidden), None when none was.
        deny: the deny patterns applied.
    """

    table_path: Path
    results: list[LicenseResult] = field(default_factory=list)
    unused: list[LicenseResult] = field(default_factory=list)
    warehouse: str | None = None
    deny: tuple[str, ...] = ()

    @property
    def failed(self) -> list[LicenseResult]:
        """The checked models that failed."""
        return [r for r in self.results if r.verdict == FAIL]

    @property
    def ok(self) -> bool:
        """True when at least one model was checked and none failed."""
        return bool(self.results) and not self.failed

    def to_dict(self) -> dict[str, Any]:
        """JSON form: file, warehouse, deny, results, unused."""
        return {"file": str(self.table_path), "warehouse": self.warehouse,
                "deny": list(self.deny), "results": [r.to_dict() for r in self.results],
                "unused": [r.to_dict() for r in self.unused]}


# --------------------------------------------------------------------------- the table

def split_row(line: str) -> list[str]:
    """The cells of one ``|``-delimited table line, stripped, ``\\|`` unescaped.

    The leading and trailing ``|`` are optional; ``\\|`` is a literal ``|`` inside a
    cell (any other backslash is kept as written).
    """
    cells, current, i = [], [], 0
    text = line.strip()
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] == "|":
            current.append("|")
            i += 2
            continue
        if char == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    cells.append("".join(current))
    if text.startswith("|"):
        cells = cells[1:]
    if text.endswith("|") and not text.endswith("\\|") and cells:
        cells = cells[:-1]
    return [cell.strip() for cell in cells]


def _unquote(cell: str) -> str:
    if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`") \
            and "`" not in cell[1:-1]:
        return cell[1:-1].strip()
    return cell


def _header(line: str) -> list[str]:
    return [_unquote(cell).lower() for cell in split_row(line)]


def _tables(lines: Sequence[str]) -> list[list[tuple[int, str]]]:
    """Runs of consecutive lines starting with ``|`` outside code fences, with line
    numbers (1-based)."""
    tables: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if _FENCE.match(stripped):
            fenced = not fenced
        if not fenced and stripped.startswith("|"):
            current.append((number, line))
            continue
        if current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def read_inventory(path: str | os.PathLike[str]) -> list[LicenseRow]:
    """The rows of the inventory table in ``path``, in file order.

    Args:
        path: a Markdown file (UTF-8), e.g. ``MODEL_LICENSES.md``.

    Raises:
        ConfigError: the file cannot be read; it has no table with a ``model_name``
            column, or two; the table lacks a column of :data:`COLUMNS`, has no separator
            row, or a row with another number of cells than the header; a ``model_name``
            is empty or appears twice. The message names the file and the line.
    """
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (the model license inventory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read: {exc}") from exc
    inventories = [t for t in _tables(text.splitlines())
                   if "model_name" in _header(t[0][1])]
    if not inventories:
        raise ConfigError(f"{where}: no table with a model_name column (expected a header "
                          f"row | {' | '.join(COLUMNS)} |)")
    if len(inventories) > 1:
        raise ConfigError(f"{where}:{inventories[1][0][0]}: a second table with a model_name "
                          f"column (the first is at line {inventories[0][0][0]}); keep one")
    table = inventories[0]
    header_line, header_text = table[0]
    header = _header(header_text)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{where}:{header_line}: the table lacks column(s) "
                          f"{', '.join(missing)} (it needs {', '.join(COLUMNS)})")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ConfigError(f"{where}:{header_line}: column(s) named twice: {', '.join(repeated)}")
    if len(table) < 2 or not all(_SEPARATOR_CELL.match(c) for c in split_row(table[1][1])) \
            or len(split_row(table[1][1])) != len(header):
        number = table[1][0] if len(table) > 1 else header_line + 1
        raise ConfigError(f"{where}:{number}: expected the separator row "
                          f"(|{'---|' * len(header)}) under the header")
    rows: list[LicenseRow] = []
    first_line: dict[str, int] = {}
    for number, line in table[2:]:
        cells = split_row(line)
        if len(cells) != len(header):
            raise ConfigError(f"{where}:{number}: {len(cells)} cell(s), the header has "
                              f"{len(header)} (write a | inside a cell as \\|)")
        values = {name: _unquote(cell) for name, cell in zip(header, cells)}
        name = values["model_name"]
        if not name:
            raise ConfigError(f"{where}:{number}: empty model_name")
        if name in first_line:
            raise ConfigError(f"{where}:{number}: model_name {name!r} appears twice (first "
                              f"at line {first_line[name]})")
        first_line[name] = number
        rows.append(LicenseRow(
            model_name=name, source=values["source"], license=values["license"],
            link=values["link"], restrictions=values["restrictions"], line=number,
            extra={k: v for k, v in values.items() if k not in COLUMNS}))
    return rows


# --------------------------------------------------------------------------- the checks

def link_url(cell: str) -> str:
    """The URL of a link cell: ``<URL>`` and ``[text](URL)`` unwrapped, else the cell."""
    found = _MARKDOWN_LINK.match(cell)
    if found:
        return found.group(1)
    if cell.startswith("<") and cell.endswith(">"):
        return cell[1:-1].strip()
    return cell


def denied_by(license_text: str, deny: Iterable[str]) -> str | None:
    """The first pattern of ``deny`` that matches ``license_text`` (case-insensitive
    ``fnmatch`` glob over the whole text), else None."""
    value = license_text.strip().lower()
    for pattern in deny:
        if fnmatchcase(value, pattern.strip().lower()):
            return pattern
    return None


def row_problem(row: LicenseRow, deny: Iterable[str] = DEFAULT_DENY) -> str | None:
    """Why ``row`` does not clear its model, or None when it does.

    The problems, first found wins: the license is missing (empty or a
    :data:`PLACEHOLDERS` value); it matches a deny pattern; the link is missing or not an
    ``http``/``https`` URL with a host.
    """
    where = f"line {row.line}"
    if row.license.strip().lower() in PLACEHOLDERS:
        shown = f" ({row.license!r})" if row.license else ""
        return f"license missing{shown} in its row ({where})"
    pattern = denied_by(row.license, deny)
    if pattern is not None:
        return f"license {row.license!r} is denied (pattern {pattern!r}; {where})"
    url = link_url(row.link)
    if not url or url.lower() in PLACEHOLDERS:
        return f"link missing in its row ({where})"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"link {row.link!r} is not an http(s) URL ({where})"
    return None


def seen_models(db_url: str) -> set[str]:
    """Every model name in the warehouse's ``model_signatures.models`` (``ModelRef``
    dicts: ``model_name``; ``name`` is read too).

    Raises:
        WarehouseError: the SQLite file is missing, the schema is not current, or the
            database cannot be read.
    """
    require_sqlite_file(db_url)
    engine = create_warehouse_engine(db_url)
    names: set[str] = set()
    try:
        check_schema(engine)
        with engine.connect() as conn:
            for (models,) in conn.execute(select(ModelSignature.models)):
                for entry in models if isinstance(models, list) else ():
                    if not isinstance(entry, dict):
                        continue
                    name = entry.get("model_name", entry.get("name"))
                    if isinstance(name, str) and name:
                        names.add(name)
    except SQLAlchemyError as exc:
        raise WarehouseError(f"reading model names failed on {display_url(engine)}: "
                             f"{exc}") from exc
    finally:
        engine.dispose()
    return names


def check_licenses(table_path: str | os.PathLike[str], *, db_url: str | None = None,
                   models: Iterable[str] = (),
                   deny: Iterable[str] = DEFAULT_DENY) -> LicenseReport:
    """Check every model seen in the warehouse and every declared one against the inventory.

    Args:
        table_path: the inventory (``MODEL_LICENSES.md``, see the module docstring).
        db_url: the warehouse whose ``model_signatures`` name the models seen; None reads
            no warehouse (only ``models`` are checked).
        models: model names declared by the caller (``ModelRef.name``; e.g. from
            ``AnalysisProfile.models`` or the command line).
        deny: license patterns that fail a model (:func:`denied_by`); ``()`` denies
            nothing.

    Returns:
        A report: one result per model seen or declared (sorted by name), then the rows
        of models neither seen nor declared as ``unused``. Nothing checked (no model
        seen nor declared) leaves ``results`` empty.

    Raises:
        ConfigError: the inventory is missing or malformed (:func:`read_inventory`), or a
            deny pattern is not a string.
        WarehouseError: ``db_url`` cannot be read (:func:`seen_models`).
    """
    patterns = tuple(deny)
    if not all(isinstance(p, str) and p.strip() for p in patterns):
        raise ConfigError(f"deny patterns must be non-empty strings, got {patterns!r:.120}")
    rows = {row.model_name: row for row in read_inventory(table_path)}
    report = LicenseReport(Path(table_path), deny=patterns)
    sources: dict[str, list[str]] = {}
    if db_url is not None:
        for name in seen_models(db_url):
            sources.setdefault(name, []).append("warehouse")
        report.warehouse = display_url(db_url)
    for name in models:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a declared model name must be a non-empty string, "
                              f"got {name!r:.60}")
        if "declared" not in sources.setdefault(name, []):
            sources[name].append("declared")
    folded = {name.lower(): name for name in rows}
    for name in sorted(sources):
        row = rows.get(name)
        if row is None:
            near = folded.get(name.lower())
            hint = (f" (a row names {near!r}: model names are compared exactly)"
                    if near else "")
            reason = f"no row for model {name!r} in {report.table_path.name}{hint}"
            report.results.append(LicenseResult(name, FAIL, reason, None,
                                                tuple(sources[name])))
            continue
        problem = row_problem(row, patterns)
        report.results.append(LicenseResult(name, FAIL if problem else OK, problem or "",
                                            row, tuple(sources[name])))
    for name in sorted(set(rows) - set(sources)):
        problem = row_problem(rows[name], patterns)
        note = "not seen in the warehouse nor declared"
        report.unused.append(LicenseResult(
            name, UNUSED, f"{note}; its row would fail: {problem}" if problem else note,
            rows[name]))
    return report

