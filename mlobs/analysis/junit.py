"""JUnit XML reports of the release checks (``mlobs gate``, ``mlobs licenses check``).

The layout is the common JUnit XML one CI systems read natively (Jenkins, GitLab,
GitHub Actions test reporters): ``<testsuites>`` holding one ``<testsuite>`` with its
counts, each ``<testcase classname= name= time=>`` holding at most one ``<failure>`` or
``<skipped>``. A check that failed is a ``failure``; one that could not decide (a gate's
``unknown``) is ``skipped`` with the reason.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlobs.core.atomic_file import write_atomically

OUTCOMES = ("passed", "failure", "skipped")


@dataclass(frozen=True)
class JUnitCase:
    """One test case.

    Args:
        classname: the group, e.g. ``mlobs.gate.asr`` (CI systems show it as the suite).
        name: the check, e.g. ``duration_ms``.
        outcome: one of :data:`OUTCOMES`.
        message: one line for a failure or a skip (the CI system's summary).
        details: the full text shown when the case is opened.
    """

    classname: str
    name: str
    outcome: str = "passed"
    message: str = ""
    details: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


def junit_xml(suite: str, cases: Sequence[JUnitCase], *,
              timestamp: datetime | None = None) -> bytes:
    """The report as UTF-8 XML bytes (one ``testsuite`` named ``suite``)."""
    failures = sum(c.outcome == "failure" for c in cases)
    skipped = sum(c.outcome == "skipped" for c in cases)
    stamp = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": "0"}
    root = ET.Element("testsuites", {"name": suite, **counts})
    node = ET.SubElement(root, "testsuite", {
        "name": suite, **counts, "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S")})
    for case in cases:
        element = ET.SubElement(node, "testcase", {"classname": case.classname,
                                                   "name": case.name, "time": "0"})
        if case.outcome != "passed":
            child = ET.SubElement(element, case.outcome, {"message": case.message})
            if case.outcome == "failure":
                child.set("type", "check")
            child.text = case.details or case.message
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: str | os.PathLike[str], suite: str, cases: Sequence[JUnitCase]) -> Path:
    """Write :func:`junit_xml` to ``path`` atomically (its folder is created)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, junit_xml(suite, cases))
    return target
