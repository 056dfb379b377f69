"""mlobs.atomic_file: the one way manifests, spool files and cache files are replaced."""

import os

import pytest

from mlobs.atomic_file import write_atomically


def test_a_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "manifest.json"
    write_atomically(target, "first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["manifest.json"]


def test_a_failed_write_keeps_the_old_content_and_removes_its_temporary_file(tmp_path,
                                                                             monkeypatch):
    target = tmp_path / "index.json"
    write_atomically(target, "old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["index.json"]


@pytest.mark.parametrize("durable, synced", [(False, 0), (True, 2)])
def test_durable_writes_sync_the_file_and_its_directory(tmp_path, monkeypatch, durable,
                                                        synced):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    write_atomically(tmp_path / "spool.jsonl", "line\n", durable=durable)
    assert len(calls) == synced
