"""Commands to paste: every hint the CLI prints names the exact command, with the
``--root`` and ``--db-url`` the user gave (a hint without them would read another
warehouse than the one the user is looking at).

Light on purpose (argparse, shlex): every command's module imports it.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable, Sequence


def masked_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``<password>`` (never printed)."""
    if "@" not in url or "://" not in url:
        return url
    from sqlalchemy.engine import make_url  # only for a URL that may carry a password

    parsed = make_url(url)
    if parsed.password is None:
        return url
    text = parsed.set(password="PASSWORD").render_as_string(hide_password=False)
    return text.replace(":PASSWORD@", ":<password>@", 1)


def given_options(args: argparse.Namespace) -> list[str]:
    """``--root DIR`` and ``--db-url URL`` as the user gave them (none when not given)."""
    words: list[str] = []
    root = getattr(args, "root", None)
    if root is not None:
        words += ["--root", str(root)]
    urls = getattr(args, "db_url", None)
    for url in [urls] if isinstance(urls, str) else urls or ():
        words += ["--db-url", masked_url(url)]
    return words


def command(*words: object, args: argparse.Namespace | None = None) -> str:
    """``mlobs WORDS...`` shell-quoted, followed by :func:`given_options` of ``args``."""
    parts = ["mlobs", *(str(w) for w in words)]
    if args is not None:
        parts += given_options(args)
    return shlex.join(parts)


def rerun(args: argparse.Namespace, *, add: Sequence[str] = (),
          drop: Iterable[str] = ()) -> str:
    """The command the user ran (``args.argv``, set by :func:`mlobs.cli.main.main`),
    without the options in ``drop`` (each with its value) and with ``add`` appended."""
    argv = list(getattr(args, "argv", None) or ())
    dropped = set(drop)
    kept: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in dropped:
            skip = "=" not in word
            continue
        kept.append(word)
    return shlex.join(["mlobs", *(_masked_word(w) for w in kept), *add])


def _masked_word(word: str) -> str:
    if "://" not in word:
        return word
    option, equals, value = word.partition("=") if word.startswith("--") else ("", "", word)
    return option + equals + masked_url(value)
