"""``mlobs cache``: the versions of cached component results, from the CLI.

Subcommands::

    mlobs cache ls [--platform-id P] [--video-id V] [--json] [--root DIR]
    mlobs cache use --platform-id P --video-id V COMPONENT VERSION [--root DIR]
    mlobs cache diff --platform-id P --video-id V COMPONENT V1 V2 [--context N] [--root DIR]

``--root`` defaults to the configured root (``$MLOBS_ROOT``, else ``./mlobs-data``); the
cache is ``<root>/cache``. ``use`` makes a version the one the pipeline loads (a rollback
or a switch; :meth:`ArtifactStore.set_current`). ``diff`` prints a unified diff of the two
versions' results as pretty-printed JSON (keys sorted). An unknown video, component or
version, or a file that no longer matches its recorded SHA-256, is an error: exit 1 with
one line on stderr.

The functions behind them, :func:`mlobs.cache.versions.list_videos` and
:func:`mlobs.cache.versions.diff_versions`, can be called directly (``set_current`` is
the store's own).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import cache_version, non_negative_int
from mlobs.cli.db import add_root_argument, fail
from mlobs.cli.formatting import tabulate
from mlobs.cli.hints import command
from mlobs.core.errors import ConfigError, CorruptArtifactError, MlobsError

if TYPE_CHECKING:
    from mlobs.cache.entries import CacheEntry, VideoCacheIndex
    from mlobs.cache.store import ArtifactStore

CACHE_USES = "the cache is ROOT/cache"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cache`` command and its subcommands to the ``mlobs`` parser."""
    cache = subparsers.add_parser(
        "cache", help="list, switch and compare versions of cached component results",
        description="The versions of cached component results per video: list them, make "
                    "one current, or diff two of them.")
    commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)

    ls = commands.add_parser("ls", help="per video: components, versions, model, created, "
                                        "current")
    ls.add_argument("--platform-id", default=None)
    ls.add_argument("--video-id", default=None)
    ls.add_argument("--json", action="store_true",
                    help="print the cache indexes as JSON (schema mlobs.cache/1)")
    add_root_argument(ls, CACHE_USES)
    ls.set_defaults(func=ls_command)

    use = commands.add_parser("use", help="make a version the current one")
    use.add_argument("--platform-id", required=True)
    use.add_argument("--video-id", required=True)
    use.add_argument("component")
    use.add_argument("version", type=cache_version)
    add_root_argument(use, CACHE_USES)
    use.set_defaults(func=use_command)

    diff = commands.add_parser("diff", help="unified diff of two versions of a component")
    diff.add_argument("--platform-id", required=True)
    diff.add_argument("--video-id", required=True)
    diff.add_argument("component")
    diff.add_argument("v1", type=cache_version, metavar="V1")
    diff.add_argument("v2", type=cache_version, metavar="V2")
    diff.add_argument("--context", type=non_negative_int, default=3, metavar="N",
                      help="lines of context around each change (default: 3)")
    add_root_argument(diff, CACHE_USES)
    diff.set_defaults(func=diff_command)


def _store(args: argparse.Namespace) -> ArtifactStore:
    from mlobs.cache.store import ArtifactStore
    from mlobs.core.config import resolve_settings

    return ArtifactStore(resolve_settings(root=args.root).cache_dir)


def _versions(store: ArtifactStore, args: argparse.Namespace) -> list[CacheEntry]:
    index = store.info(args.platform_id, args.video_id)
    return index.versions(args.component) if index else []


# -- the commands --------------------------------------------------------------------------

def ls_command(args: argparse.Namespace) -> int:
    """``mlobs cache ls``: returns 0 (an empty cache included)."""
    from mlobs.cache.versions import list_videos

    filtered = args.platform_id is not None or args.video_id is not None
    try:
        store = _store(args)
        videos = list_videos(store, platform_id=args.platform_id, video_id=args.video_id)
        everything = list_videos(store) if filtered and not videos else videos
    except MlobsError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps([index.to_dict() for index in videos], indent=2, ensure_ascii=False))
        return 0
    rows = []
    for index in videos:
        for component in sorted(index.entries):
            for e in index.versions(component):
                rows.append((f"{index.platform_id}/{index.video_id}", component,
                             f"v{e.version}", "*" if e.is_current else "",
                             e.model_name or "", (e.model_signature or "")[:12],
                             e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                             e.status, e.size_bytes, e.run_id or ""))
    if not rows and everything:
        wanted = " and ".join(f"{name} {value!r}" for name, value in (
            ("platform", args.platform_id), ("video", args.video_id)) if value is not None)
        print(f"the cache under {store.root} has {_entry_count(everything)} version(s) of "
              f"{len(everything)} video(s), but none for {wanted}; "
              f"`{command('cache', 'ls', args=args)}` lists them all")
        return 0
    if not rows:
        print(f"no cached results under {store.root}")
        return 0
    print(tabulate(rows, headers=("platform/video", "component", "version", "current",
                                  "model", "model_signature", "created (UTC)", "status",
                                  "bytes", "run_id"),
                   disable_numparse=True))
    return 0


def _entry_count(videos: list[VideoCacheIndex]) -> int:
    return sum(len(versions) for index in videos for versions in index.entries.values())


def _unknown_version(store: ArtifactStore, args: argparse.Namespace, version: int) -> str:
    """Why ``version`` of the component cannot be chosen, with what there is to choose."""
    where = f"{args.platform_id}/{args.video_id}"
    index = store.info(args.platform_id, args.video_id)
    listing = command("cache", "ls", "--platform-id", args.platform_id, "--video-id",
                      args.video_id, args=args)
    if index is None or not index.entries:
        return (f"nothing is cached for {where} under {store.root}; "
                f"`{command('cache', 'ls', args=args)}` lists the cached videos")
    versions = index.versions(args.component)
    if not versions:
        return (f"{where} has no cached {args.component!r}; its components: "
                f"{', '.join(sorted(index.entries))} (`{listing}`)")
    shown = ", ".join(f"v{e.version}" + (" (current)" if e.is_current else "")
                      for e in versions)
    return (f"{args.component!r} of {where} has no version {version}; its versions: "
            f"{shown} (`{listing}` shows their models and runs)")


def use_command(args: argparse.Namespace) -> int:
    """``mlobs cache use``: returns 0, or 1 for an unknown video, component or version."""
    try:
        store = _store(args)
        versions = {e.version for e in _versions(store, args)}
        if args.version not in versions:
            return fail(_unknown_version(store, args, args.version))
        before = store.entry(args.platform_id, args.video_id, args.component)
        chosen = store.set_current(args.platform_id, args.video_id, args.component,
                                   args.version)
    except (ConfigError, OSError) as exc:
        return fail(str(exc))
    where = f"{args.platform_id}/{args.video_id} {args.component}"
    if before.version == chosen.version:
        print(f"{where}: v{chosen.version} was already current")
    else:
        print(f"{where}: current version is now v{chosen.version} (was v{before.version})")
    return 0


def diff_command(args: argparse.Namespace) -> int:
    """``mlobs cache diff``: returns 0 (the diff, or a line saying they are identical),
    or 1 for an unknown version or an unreadable file."""
    from mlobs.cache.versions import diff_versions

    try:
        store = _store(args)
        versions = {e.version for e in _versions(store, args)}
        for version in (args.v1, args.v2):
            if version not in versions:
                return fail(_unknown_version(store, args, version))
        text = diff_versions(store, args.platform_id, args.video_id, args.component,
                             args.v1, args.v2, context=args.context)
    except (ConfigError, CorruptArtifactError) as exc:
        return fail(str(exc))
    if text:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        print(f"{args.component} v{args.v1} and v{args.v2} have identical results")
    return 0

