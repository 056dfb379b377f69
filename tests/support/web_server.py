"""The real ``mlobs ui`` server as a subprocess, for tests that drive it over HTTP (a
browser): started on a free port of 127.0.0.1, ready once ``/healthz`` answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.ports import free_port
from support.processes import stop

#: how long the server may take to answer /healthz (imports, migrations check, bind).
READY_TIMEOUT_S = 60.0


def clean_environment() -> dict[str, str]:
    """This process's environment without ``MLOBS_*`` (a developer's settings would
    point the server at another warehouse or demand a token)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLOBS_")}


@contextmanager
def ui_server_process(db_url: str, root: Path) -> Iterator[str]:
    """Serve ``db_url`` and ``root`` with ``mlobs ui``; yields the base URL
    (``http://127.0.0.1:PORT``) once healthy, and stops the server afterwards.

    The server's output goes to ``root/ui-server.log``, quoted when it fails to start.
    """
    port = free_port()
    log_path = root / "ui-server.log"
    command = [sys.executable, "-m", "mlobs.cli.main", "ui", "--port", str(port),
               "--db-url", db_url, "--root", str(root)]
    with open(log_path, "ab") as log:
        # cwd=root: nothing the server might default to lands in the checkout
        process = subprocess.Popen(command, cwd=root, env=clean_environment(),
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base_url, log_path)
        yield base_url
    finally:
        stop(process)


def _wait_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mlobs ui exited with {process.returncode} before "
                               f"answering /healthz:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlobs ui did not answer {base_url}/healthz within "
                               f"{READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"
