"""A RUN_ID on the command line: the whole id or a unique prefix of it, like git's
abbreviated hashes (``mlobs runs show 909ec1``).

One resolver for every command that takes run ids (``runs show``, ``runs manifest``,
``drift --*-runs``, ``gate --*-runs``): an exact id is one primary-key lookup, a prefix
one ``LIKE 'prefix%'`` query on the indexed run_id column
(:mod:`mlobs.warehouse.run_queries`); the runs table is never read whole.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mlobs.cli.formatting import when
from mlobs.cli.hints import command
from mlobs.core.errors import ConfigError

if TYPE_CHECKING:
    from mlobs.warehouse.store import WarehouseStore

#: the candidates an ambiguous prefix lists (the newest ones).
CANDIDATES_SHOWN = 10


def resolve_run_id(store: WarehouseStore, text: str, args: argparse.Namespace | None = None,
                   *, usage: tuple[str, ...] = ("runs", "show")) -> str:
    """The run_id that ``text`` names: itself when a run has that id, else the one run
    whose id starts with it.

    Args:
        args: the command's arguments, for the ``--root``/``--db-url`` of the hints.
        usage: the command words a hint repeats with a whole id.

    Raises:
        ConfigError: no run id starts with ``text``, or several do (the message lists
            the newest of them: id, platform/video, started_at, status).
        WarehouseError: the warehouse cannot be read.
    """
    prefix = text.strip()
    if not prefix:
        raise ConfigError("a run id must not be empty")
    if store.run_statuses([prefix]):
        return prefix
    total, rows = store.runs_with_id_prefix(prefix, limit=CANDIDATES_SHOWN)
    if total == 1:
        return str(rows[0]["run_id"])
    if total == 0:
        raise ConfigError(f"no run {prefix!r} in the warehouse {store.url} (no run id "
                          f"starts with it); `{command('runs', 'list', args=args)}` lists "
                          "the latest runs")
    shown = "" if total == len(rows) else f"; the newest {len(rows)}"
    lines = [f"run id {prefix!r} is ambiguous: {total} runs have an id starting with "
             f"it{shown}:"]
    places = [f"{row['platform_id']}/{row['video_id']}" for row in rows]
    width = max(len(place) for place in places)
    lines += [f"  {row['run_id']}  {place.ljust(width)}  started {when(row['started_at'])} "
              f"UTC  {row['status']}" for row, place in zip(rows, places)]
    lines.append(f"give more of the id, e.g. "
                 f"`{command(*usage, rows[0]['run_id'], args=args)}`")
    raise ConfigError("\n".join(lines))


def resolve_run_ids(store: WarehouseStore, texts: Iterable[str],
                    args: argparse.Namespace | None = None) -> tuple[str, ...]:
    """:func:`resolve_run_id` of each (``--baseline-runs ID,ID``), in order, without
    repeats."""
    return tuple(dict.fromkeys(resolve_run_id(store, text, args, usage=("runs", "show"))
                               for text in texts))


def resolve_run_id_options(args: argparse.Namespace, *dests: str) -> None:
    """Replace each ``args.<dest>`` given (ids or prefixes, ``--baseline-runs ID,ID``) by
    the whole run ids, reading the warehouse of ``args`` once.

    Raises:
        MlobsError: the warehouse cannot be read, or an id names no run or several.
    """
    given = [dest for dest in dests if getattr(args, dest, None)]
    if not given:
        return
    from mlobs.cli.db import open_existing_store, resolve_db_url

    with open_existing_store(resolve_db_url(args)) as store:
        for dest in given:
            setattr(args, dest, resolve_run_ids(store, getattr(args, dest), args))
