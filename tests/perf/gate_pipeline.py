"""A small CPU-bound pipeline for the gate's calibration (``bench_gate.py``).

    python gate_pipeline.py [--slow COMPONENT=FACTOR]

One run of three components (``tokenize``, ``embed``, ``score``), each invoked
``CALLS`` times on pure-Python arithmetic of fixed size; ``--slow`` multiplies one
component's work by FACTOR (1.10: 10% more work, so about 10% slower). The warehouse and
run labels come from MLOBS_DB_URL / MLOBS_RUN_LABELS, as ``mlobs gate run`` sets them.
"""

import argparse
import sys

import mlobs

CALLS = 10
WORK = {"tokenize": 300_000, "embed": 450_000, "score": 225_000}  # turns: ~10-20 ms a call


def busy(turns: int) -> int:
    total = 0
    for i in range(turns):
        total += i * i % 7
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", default="", metavar="COMPONENT=FACTOR")
    args = parser.parse_args()
    factors = {name: 1.0 for name in WORK}
    if args.slow:
        name, _, factor = args.slow.partition("=")
        factors[name] = float(factor)
    with mlobs.run("bench", "gate-fixture", pipeline_version="calibration") as run:
        for _ in range(CALLS):
            for name, turns in WORK.items():
                with run.component(name, producer_version="1"):
                    busy(int(turns * factors[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
