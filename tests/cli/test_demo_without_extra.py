"""``mlobs demo`` on an install without the ``demo`` extra: the documented hint, exit 2.

Each case runs the CLI in a fresh interpreter whose import system cannot find one module,
as after a plain ``pip install mlobs`` (this test environment has them all installed).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: Imports of ``BLOCKED`` (and of its submodules) fail as for a module that is not installed.
PRELUDE = """
import sys

BLOCKED = {blocked!r}


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from mlobs.cli.main import main

sys.exit(main(["demo", "--root", {root!r}, "--quiet"]))
"""


@pytest.mark.parametrize("blocked", ["sklearn", "numpy"])
def test_a_missing_demo_library_is_named_with_the_command_that_installs_it(tmp_path, blocked):
    root = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")}
    done = subprocess.run([sys.executable, "-c", PRELUDE.format(blocked=blocked, root=str(root))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"'{blocked}'" in done.stderr
    assert "pip install 'mlobs[demo]'" in done.stderr
    assert done.stdout == ""
    assert not root.exists(), "the demo started before it found its libraries missing"
