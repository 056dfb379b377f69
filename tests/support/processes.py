"""Stopping a server process a test started."""

import subprocess


def stop(process: subprocess.Popen) -> None:
    """Terminate ``process`` (kill it after 10 s) and reap it; nothing if it has ended."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
