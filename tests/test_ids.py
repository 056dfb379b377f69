"""Record ids are random version-4 UUIDs in canonical form, distinct across forks."""

import os
import threading
import uuid

import pytest

from mlobs.core.ids import new_uuid4


def test_ids_are_canonical_version_4_uuids_with_every_variant_digit():
    ids = [new_uuid4() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(text) for text in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids  # lowercase, dashed, 36 characters
    # Every hex digit appears where the bits are random (not a fixed pattern).
    assert {text[0] for text in ids} == set("0123456789abcdef")
    assert {text[19] for text in ids} == set("89ab")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_ids_than_its_parent():
    new_uuid4()  # the parent holds random bytes for the next ids at the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: send its ids and leave without running pytest's teardown
        os.close(read_end)
        os.write(write_end, " ".join(new_uuid4() for _ in range(100)).encode())
        os._exit(0)
    os.close(write_end)
    parent_ids = {new_uuid4() for _ in range(100)}
    with os.fdopen(read_end) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child_ids) == 100 and not child_ids & parent_ids


def test_threads_drawing_at_once_never_get_the_same_id():
    ids: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(new_uuid4() for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in ids for i in out]
    assert len(set(every)) == len(every) == 40_000
