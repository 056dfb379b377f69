"""The shell examples of docs/cli.md are run and their output compared.

Syntax, in the Markdown:

* an example is a fenced block opened with ```` ```console ````; each ``$ mlobs ...`` line
  is a command, the lines after it (up to the next ``$``) its expected output, stdout and
  stderr together. ``# exit N`` at the end of a command line is its expected exit code
  (default 0);
* ``...`` alone on a line matches any number of lines (also none); ``...`` inside a line
  matches any text within that line (ids, times, sizes);
* a block that is not meant to run here (a PostgreSQL URL, the full demo, timings) is
  preceded by ``<!-- docs-test: skip REASON -->`` and reported as skipped with that
  reason.

Each block runs in a fresh copy of a small data directory recorded with the ``mlobs``
API (:func:`prepared_root`), as ``./mlobs-data`` of the working directory, with
``MLOBS_ROOT`` and ``MLOBS_DB_URL`` unset. A block that fails shows a diff of expected
and actual output with the block's line in docs/cli.md.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mlobs
from mlobs.cli.main import main
from mlobs.recording.recorder import set_recorder

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*(.*?)\s*-->")
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")


@dataclass
class Command:
    line: int
    argv: list[str]
    exit_code: int
    expected: list[str] = field(default_factory=list)


@dataclass
class Example:
    line: int
    commands: list[Command]
    skip: str | None = None


def examples(text: str) -> list[Example]:
    """The ```console blocks of ``text``, with their skip markers."""
    found: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.search(before)
        example = Example(i + 1, [], (marker.group(1) or "no reason given") if marker
                          else None)
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            if line.startswith("$ "):
                code = EXIT.search(line)
                command = line[2:code.start()] if code else line[2:]
                example.commands.append(Command(i + 1, shlex.split(command),
                                                int(code.group(1)) if code else 0))
            elif example.commands:
                example.commands[-1].expected.append(line.rstrip())
            i += 1
        found.append(example)
        i += 1
    return found


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (with ``...`` wildcards) matches ``actual`` line by line."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[n:]) for n in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*?".join(re.escape(part) for part in head.split("..."))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and \
        matches(rest, actual[1:])


def run(argv: list[str]) -> tuple[int, list[str]]:
    """``mlobs ARGV`` in this process: its exit code and its output lines."""
    assert argv[0] == "mlobs", f"only mlobs commands run in examples, not {argv[0]!r}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv[1:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    lines = out.getvalue().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return code, lines


# -- the recorded data directory ------------------------------------------------------

#: the runs' ids, in the order they are recorded (the ids a run gets are random).
RUN_IDS = ("7d1f0a3e-8c2b-4f5e-9a61-3b2c1d0e4f51", "7d9e2b41-5a6c-4d3e-8f70-1a2b3c4d5e6f",
           "a54c8e90-2f1b-4c7d-9e3a-6b5c4d3e2f10", "c3f07b12-9d8e-4a6f-b5c4-0e1d2c3b4a59")
WHISPER = mlobs.ModelRef("openai/whisper-small", "r1", "sha256:" + "a" * 64,
                         engine="torch", precision="fp16")


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mlobs-data`` with four runs: youtube/abc three times (labels release=rc-1, then
    rc-2 twice; pipeline_version 1.4.0, then 1.5.0; each storing a version of its cached
    ``asr``), youtube/xyz once (profile ``fast``); and ``bad/manifest.json``, a file that
    is not a manifest."""
    base = tmp_path_factory.mktemp("docs-root")
    root = base / "mlobs-data"
    ids = iter(RUN_IDS)
    patch = pytest.MonkeyPatch()
    patch.setattr("mlobs.hooks.run.new_uuid4", lambda: next(ids))  # ids the page can name
    mlobs.configure(root=root, db_url=f"sqlite:///{root / 'warehouse.db'}",
                    sinks=["manifest", "warehouse"])
    try:
        for video, version, profile, release in (
                ("abc", "1.4.0", "default", "rc-1"), ("abc", "1.5.0", "default", "rc-2"),
                ("abc", "1.5.0", "default", "rc-2"), ("xyz", "1.5.0", "fast", "rc-2")):
            with mlobs.run("youtube", video, pipeline_version=version, profile=profile,
                           labels={"release": release}) as r:
                with r.component("asr", producer_version="2.1.0", schema_version="3",
                                 models=[WHISPER], cache="bypass",
                                 inputs={"audio": f"{video}.wav"}) as c:
                    c.set_result({"segments": [f"hello from {video}"]})
                with r.component("cleaning"):
                    pass
    finally:
        set_recorder(None)  # flushes the sinks
        patch.undo()
    (base / "bad").mkdir()
    (base / "bad" / "manifest.json").write_text('{"schema": "other/1"}')
    return base


# -- the tests ------------------------------------------------------------------------

EXAMPLES = examples(DOC.read_text(encoding="utf-8"))


def test_the_page_has_checked_examples_and_no_unchecked_shell_blocks():
    assert sum(e.skip is None for e in EXAMPLES) >= 6
    # every block holding an `$ mlobs` line is a console block (checked or skipped)
    plain = re.findall(r"^```\n(?:(?!```)[\s\S])*?^\$ mlobs", DOC.read_text(encoding="utf-8"),
                       re.MULTILINE)
    assert not plain, f"shell examples outside ```console blocks: {plain}"


@pytest.mark.parametrize("example", EXAMPLES,
                         ids=[f"cli.md:{e.line}" for e in EXAMPLES])
def test_example(example: Example, prepared_root: Path, tmp_path: Path, monkeypatch):
    if example.skip is not None:
        pytest.skip(f"docs/cli.md line {example.line}: {example.skip}")
    assert example.commands, f"docs/cli.md line {example.line}: a console block with no $"
    workdir = tmp_path / "work"
    shutil.copytree(prepared_root, workdir)
    monkeypatch.chdir(workdir)
    for name in ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_RUN_LABELS"):
        monkeypatch.delenv(name, raising=False)
    for command in example.commands:
        code, actual = run(command.argv)
        if code != command.exit_code or not matches(command.expected, actual):
            diff = "\n".join(difflib.unified_diff(
                command.expected, actual, "docs/cli.md (expected)", "actual", lineterm=""))
            pytest.fail(f"docs/cli.md line {command.line}: $ {shlex.join(command.argv)}\n"
                        f"exit code {code}, expected {command.exit_code}\n{diff}",
                        pytrace=False)


@pytest.mark.parametrize("expected, actual, ok", [
    (["a ... c"], ["a b c"], True),
    (["a ... c"], ["a b d"], False),
    (["x", "...", "z"], ["x", "1", "2", "z"], True),
    (["x", "...", "z"], ["x", "z"], True),
    (["x", "..."], ["x"], True),
    (["x"], ["x", "y"], False),
    (["v1 (x.y)"], ["v1 (xzy)"], False),  # only ... is a wildcard
])
def test_the_matcher(expected, actual, ok):
    assert matches(expected, actual) is ok
