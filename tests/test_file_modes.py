"""Files and directories mlobs creates follow the umask (a reader service or a second user
can read them when the umask lets it), never a fixed mode such as mkstemp's 0600.

The umask is process-wide, so each case sets it in a subprocess of its own.
"""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    os.umask(int(sys.argv[1], 8))
    root = Path(sys.argv[2])

    import mlobs
    from mlobs.core.atomic_file import write_atomically
    from mlobs.core.errors import InvalidRecordError
    from mlobs.core.manifest import read_manifest
    from mlobs.sinks.spool import Spool
    from mlobs.sinks.spool_replay import replay

    write_atomically(root / "plain" / "file.bin", b"x")

    # A pipeline: the manifest, a cached version and its index, an intermediate directory.
    mlobs.configure(root=root, sinks=["manifest"], memory_probes=False, gpu_probes=False)
    with mlobs.run("youtube", "abc") as run:
        with run.component("asr", producer_version="1", schema_version="1", cache=True,
                           inputs={"audio": "a.wav"}) as c:
            mlobs.intermediate_dir("youtube", "abc", "frames")
            c.set_result({"text": "hello"})
    assert mlobs.flush(timeout_s=30)
    (manifest,) = (root / "runs").rglob("manifest.json")
    run_record, components = read_manifest(manifest)

    # The spool: an append left as it is (os.open), and one replayed: the replay refuses
    # the run (rejected.jsonl) and stops at the components (the claimed file is rewritten).
    Spool(root / "appended").append([run_record])
    Spool(root / "spool").append([run_record, *components])

    class Away:
        def write(self, runs, components):
            if runs:
                raise InvalidRecordError("refused for the test")
            raise ConnectionError("the database is away")

    assert replay(root / "spool", Away()).pending == len(components)
""")


def _modes_after_writing(root: Path, umask: int) -> tuple[dict[str, int], dict[str, int]]:
    """Run WRITER under ``umask``; (file modes, directory modes) under ``root`` by path."""
    subprocess.run([sys.executable, "-c", WRITER, oct(umask), str(root)], check=True,
                   timeout=120)
    files, directories = {}, {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(directory, name)
            directories[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
        for name in filenames:
            path = Path(directory, name)
            files[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return files, directories


@pytest.mark.parametrize("umask, file_mode, directory_mode", [
    (0o022, 0o644, 0o755),
    (0o077, 0o600, 0o700),
    (0o002, 0o664, 0o775),  # group-writable: a fixed 0o644 would lose the group's write
], ids=["umask022", "umask077", "umask002"])
def test_every_file_and_directory_follows_the_umask(tmp_path, umask, file_mode,
                                                    directory_mode):
    files, directories = _modes_after_writing(tmp_path, umask)
    names = {Path(path).name for path in files}
    # Every kind of file mlobs writes was written (so none escapes the check below).
    assert {"file.bin", "manifest.json", "cache_manifest.json", "v1.json",
            ".mlobs-intermediate.json", ".lock", "rejected.jsonl"} <= names, names
    assert any(name.endswith(".jsonl.replaying") for name in names), names
    assert any(path.startswith("appended/warehouse-") for path in files), files
    assert not [path for path in files if path.endswith(".tmp")]
    assert {path: oct(mode) for path, mode in files.items() if mode != file_mode} == {}
    assert {path: oct(mode) for path, mode in directories.items()
            if mode != directory_mode} == {}

