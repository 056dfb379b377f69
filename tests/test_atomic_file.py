"""mlobs.core.atomic_file: the one way manifests, spool files and cache files are replaced."""

import os

import pytest

from mlobs.core.atomic_file import write_atomically


def test_a_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "manifest.json"
    write_atomically(target, "first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    write_atomically(target, bytearray(b"third"))  # a codec may return any bytes-like
    assert target.read_bytes() == b"third"
    write_atomically(target, memoryview(b"fourth"))
    assert target.read_bytes() == b"fourth"
    assert os.listdir(target.parent) == ["manifest.json"]


def test_chunks_from_a_generator_are_written_in_turn_and_a_failing_one_changes_nothing(
        tmp_path):
    target = tmp_path / "spool.jsonl"
    write_atomically(target, (f"line {i}\n".encode() for i in range(3)))
    assert target.read_text() == "line 0\nline 1\nline 2\n"

    def broken():
        yield b"half"
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        write_atomically(target, broken())
    assert target.read_text() == "line 0\nline 1\nline 2\n"
    assert os.listdir(tmp_path) == ["spool.jsonl"]


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


def test_a_taken_temporary_name_is_skipped_and_only_so_many_are_tried(tmp_path, monkeypatch):
    target = tmp_path / "index.json"
    taken = tmp_path / f".index.json.{'00' * 6}.tmp"
    taken.write_text("someone else's")
    draws = iter([b"\0" * 6, b"\1" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    write_atomically(target, "new")  # the second name is free
    assert target.read_text() == "new"
    assert taken.read_text() == "someone else's"

    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)  # every name taken
    with pytest.raises(FileExistsError, match="no free temporary file name"):
        write_atomically(target, "newer")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == [taken.name, "index.json"]
