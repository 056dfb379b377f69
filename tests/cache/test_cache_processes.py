"""The cache across processes: concurrent savers, and resuming after a SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mlobs.cache.store import ArtifactStore
from mlobs.core.signature import IdempotencyKey

SAVER = textwrap.dedent("""
    import sys, time
    from mlobs.cache.store import ArtifactStore
    from mlobs.core.signature import IdempotencyKey
    root, start_at = sys.argv[1], float(sys.argv[2])
    key = IdempotencyKey("youtube", "abc", "asr", "cfg", None, "1", "1", None)
    store = ArtifactStore(root)
    while time.time() < start_at:
        pass
    for i in range(20):
        store.save("youtube", "abc", "asr", {"segments": ["x" * 1000] * 50, "i": i},
                   key=key, input_hash="h")
""")


def test_two_processes_saving_one_key_leave_valid_versions_and_one_current(tmp_path):
    start_at = time.time() + 1.0
    savers = [subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path), str(start_at)])
              for _ in range(2)]
    assert [p.wait(timeout=60) for p in savers] == [0, 0]
    store = ArtifactStore(tmp_path)
    versions = store.info("youtube", "abc").versions("asr")
    assert [e.version for e in versions] == list(range(1, 41))
    assert sum(e.is_current for e in versions) == 1
    for entry in versions:  # every file is whole and matches its digest
        assert store.load_entry("youtube", "abc", entry)["segments"][0] == "x" * 1000
    leftovers = [p.name for p in (store.video_dir("youtube", "abc") / "asr").iterdir()
                 if not p.name.startswith("v")]
    assert leftovers == []


PIPELINE = textwrap.dedent("""
    import os, sys, time
    import mlobs
    marker = sys.argv[1]
    with mlobs.run("youtube", "resume-me", config={"k": 1}) as run:
        for name in ("cleaning", "chunking", "embedding", "summary"):
            with run.component(name, producer_version="1", schema_version="1", cache=True,
                               inputs={"step": name}) as c:
                if c.hit:
                    continue
                with open(marker, "a") as log:
                    log.write(name + "\\n")
                if name == "embedding" and os.environ.get("HANG"):
                    time.sleep(60)  # killed here
                c.set_result({"done": name})
    print(run.run_id)
""")


def test_a_run_killed_midway_resumes_with_only_the_unfinished_components(tmp_path):
    marker = tmp_path / "computed.txt"
    env = {**os.environ, "MLOBS_ROOT": str(tmp_path / "data"), "HANG": "1"}
    first = subprocess.Popen([sys.executable, "-c", PIPELINE, str(marker)], env=env)
    deadline = time.time() + 60
    while "embedding" not in (marker.read_text() if marker.exists() else ""):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # the manifest sink writes within its flush interval
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert marker.read_text().split() == ["cleaning", "chunking", "embedding"]

    env.pop("HANG")
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(marker)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert marker.read_text().split() == ["cleaning", "chunking", "embedding",
                                          "embedding", "summary"]
    run_id = done.stdout.strip()
    [manifest] = (tmp_path / "data" / "runs" / "youtube" / "resume-me" / run_id).glob(
        "manifest.json")
    document = json.loads(manifest.read_text())
    statuses = {c["component"]: c["cache_status"] for c in document["components"]}
    assert statuses == {"cleaning": "hit", "chunking": "hit", "embedding": "miss",
                        "summary": "miss"}
    killed = [p.name for p in manifest.parent.parent.iterdir() if p.name != run_id]
    assert document["resumed_from_run_id"] == killed[0]


KEY = IdempotencyKey("p", "v", "c", None, None, "1", "1", None)
NASTY = st.one_of(st.sampled_from(["..", ".", "../..", "/etc", "a/../../b", "\x00", "",
                                   "~", "x" * 400]),
                  st.text(min_size=0, max_size=300))


@settings(max_examples=60, deadline=None)
@given(platform_id=NASTY, video_id=NASTY, component=NASTY)
def test_identifiers_never_leave_the_cache_root(tmp_path_factory, platform_id, video_id,
                                                component):
    root = tmp_path_factory.mktemp("cache").resolve()
    store = ArtifactStore(root)
    key = IdempotencyKey(platform_id, video_id, component, None, None, "1", "1", None)
    entry = store.save(platform_id, video_id, component, {"ok": True}, key=key,
                       input_hash="h")
    written = (store.video_dir(platform_id, video_id) / entry.file_path).resolve()
    assert written.is_relative_to(root) and written.is_file()
    assert len(written.relative_to(root).parts) == 4
    assert store.load(platform_id, video_id, component) == {"ok": True}
