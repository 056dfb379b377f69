"""``python -m mlobs_dashboards`` (also ``mlobs-dashboards``): generate, check, lint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlobs_dashboards import generate

PROVISIONING = generate.GENERATED_DIR.parent / "provisioning" / "datasources.yaml"

EPILOG = """\
examples:
  python -m mlobs_dashboards generate          write dashboards/generated/*.json
  python -m mlobs_dashboards check             exit 1 when the committed JSON is stale
  python -m mlobs_dashboards lint              the lint rules (needs the lint extra)

`make dashboards` runs generate, then lint.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlobs_dashboards", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="mlobs's Grafana 11.6 dashboards, generated from code.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, help_text in (("generate", "write every dashboard as JSON"),
                            ("check", "compare the JSON files with what the code generates"),
                            ("lint", "run the lint rules on the JSON files")):
        command = commands.add_parser(name, help=help_text, description=help_text + ".")
        command.add_argument("--dir", type=Path, default=None,
                             help="the JSON directory (default: dashboards/generated of "
                                  "this checkout)")
    args = parser.parse_args(argv)
    if args.dir is None:
        if not (generate.GENERATED_DIR.parent / "pyproject.toml").exists():
            parser.error("not run from a checkout of mlobs (an installed copy has no "
                         "dashboards/generated): pass --dir")
        args.dir = generate.GENERATED_DIR

    if args.command == "generate":
        for path in generate.write(args.dir):
            print(f"wrote {path}")
        return 0
    if args.command == "check":
        problems = generate.differences(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `make dashboards` and commit the result", file=sys.stderr)
        return 1 if problems else 0

    try:
        from mlobs_dashboards import lint
    except ImportError as exc:
        print(f"the lint needs the lint extra (pip install -e 'dashboards[lint]'): {exc}",
              file=sys.stderr)
        return 2
    provisioned = lint.provisioned_datasources(PROVISIONING)
    paths = sorted(args.dir.glob("*.json"))
    if not paths:
        print(f"no dashboard JSON in {args.dir}", file=sys.stderr)
        return 1
    problems = [line for path in paths
                for line in lint.lint(generate.load(path), provisioned)]
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(paths)} dashboards, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
