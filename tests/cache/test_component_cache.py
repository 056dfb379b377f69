"""Component caching by idempotency key: hits, misses and their reasons, versions."""

import json
from dataclasses import dataclass

import pytest

import mlobs
from mlobs.cache.inputs import FileInput
from mlobs.cache.store import ArtifactStore
from mlobs.testing import capture

VERSIONS = {"producer_version": "1.0", "schema_version": "1"}
WHISPER = mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                         precision="fp16", device="cuda:0")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    return tmp_path


def run_once(root, calls: list, *, text="hello world", models=(WHISPER,), cache=True,
             config=None, **versions):
    """One run of a two-step pipeline: asr (cached, models) → words (cached, input = asr)."""
    versions = {**VERSIONS, **versions}
    with capture(root=root) as rec:
        with mlobs.run("youtube", "abc", config=config or {"lang": "en"}) as run:
            with run.component("asr", models=models, cache=cache, inputs={"text": text},
                               **versions) as c:
                if c.hit:
                    transcript = c.result
                else:
                    calls.append("asr")
                    transcript = {"text": text.upper()}
                    c.set_result(transcript)
            with run.component("words", cache=cache, inputs={"transcript": transcript},
                               **VERSIONS) as c:
                if not c.hit:
                    calls.append("words")
                    c.set_result(transcript["text"].split())
                words = c.result
    return rec, words


def reasons(rec):
    return {c.component: (c.cache_status, c.cache_miss_reason) for c in rec.components}


def test_second_run_hits_and_returns_the_same_result(root):
    calls: list = []
    first, words = run_once(root, calls)
    assert reasons(first) == {"asr": ("miss", "no_entry"), "words": ("miss", "no_entry")}
    second, again = run_once(root, calls)
    assert calls == ["asr", "words"] and again == words == ["HELLO", "WORLD"]
    assert reasons(second) == {"asr": ("hit", None), "words": ("hit", None)}
    assert second.component("asr").cache_key == first.component("asr").cache_key
    assert second.component("asr").cache_version == 1


@pytest.mark.parametrize("change, reason", [
    ({"models": (mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64,
                                engine="onnx", precision="fp16", device="cuda:0"),)},
     "model_signature_changed"),
    ({"producer_version": "1.1"}, "producer_version_changed"),
    ({"schema_version": "2"}, "schema_changed"),
    ({"config": {"lang": "de"}}, "config_changed"),
])
def test_a_changed_key_part_is_the_miss_reason_and_downstream_sees_new_input(root, change,
                                                                           reason):
    calls: list = []
    run_once(root, calls)
    rec, _ = run_once(root, calls, **change)
    if "config" in change:  # the config is in every component's key
        assert reasons(rec) == {"asr": ("miss", reason), "words": ("miss", reason)}
    else:
        # asr's result is unchanged, so words still hits: input_changed needs new data
        assert reasons(rec)["asr"] == ("miss", reason)


def test_changed_upstream_output_is_input_changed_downstream(root):
    calls: list = []
    run_once(root, calls, text="hello world")
    rec, words = run_once(root, calls, text="goodbye world")
    assert reasons(rec) == {"asr": ("miss", "input_changed"),
                            "words": ("miss", "input_changed")}
    assert words == ["GOODBYE", "WORLD"]


def test_every_rerun_is_a_new_version_and_cache_use_switches_back(root):
    calls: list = []
    run_once(root, calls)
    forced, _ = run_once(root, calls, cache="bypass")
    assert reasons(forced)["asr"] == ("bypass", "forced")
    assert forced.component("asr").cache_version == 2
    store = ArtifactStore(root / "cache")
    assert [e.version for e in store.info("youtube", "abc").versions("asr")] == [1, 2]
    store.set_current("youtube", "abc", "asr", 1)
    rec, _ = run_once(root, calls)
    assert rec.component("asr").cache_version == 1


def test_truncated_edited_or_vanished_files_are_corrupt_misses(root):
    calls: list = []
    run_once(root, calls)
    store = ArtifactStore(root / "cache")
    path = store.video_dir("youtube", "abc") / store.entry("youtube", "abc", "asr").file_path
    original = path.read_bytes()
    for damage in (original[:5], original.replace(b"HELLO", b"HELLX"), None):
        if damage is None:
            path.unlink()
        else:
            path.write_bytes(damage)
        rec, words = run_once(root, calls)
        assert reasons(rec)["asr"] == ("miss", "corrupt")
        assert words == ["HELLO", "WORLD"]  # recomputed, never the damaged content
        path = store.video_dir("youtube", "abc") / store.entry("youtube", "abc",
                                                             "asr").file_path
        original = path.read_bytes()


def test_expired_versions_are_recomputed(root):
    with capture(root=root):
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", cache=True, **VERSIONS) as c:
                c.set_result([1])
    with capture(root=root) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", cache=True, cache_ttl_days=0, **VERSIONS) as c:
                assert not c.hit
                c.set_result([1])
    assert rec.component("asr").cache_miss_reason == "expired"


def test_an_incomplete_key_is_never_cached(root):
    for kwargs in ({"producer_version": "1"},  # no schema_version
                   {**VERSIONS, "inputs": {"bad": {1, 2}}}):
        with capture(root=root) as rec:
            for _ in range(2):
                with mlobs.run("youtube", "abc") as run:
                    with run.component("asr", cache=True, **kwargs) as c:
                        assert not c.hit
                        c.set_result("x")
        for record in rec.components:
            assert record.cache_status == "bypass" and record.cache_version is None
            assert any("not cached" in w for w in record.warnings)
    assert not (root / "cache").exists()


class HostlessArray:
    """An array-like whose bytes cannot be read (a device array, say)."""

    dtype, shape = "float32", (2,)

    def tobytes(self):
        raise RuntimeError("device array not on host")


def nested(depth):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("inputs", [{"x": HostlessArray()}, {"x": nested(5000)}],
                         ids=["tobytes raises", "nested too deep"])
def test_inputs_that_break_hashing_fail_closed_and_the_pipeline_goes_on(root, inputs):
    with capture(root=root) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", cache=True, inputs=inputs, **VERSIONS) as c:
                assert not c.hit
                c.set_result("x")
            assert mlobs.current() is not c  # the component's context was left
    [record] = rec.components
    assert record.status == "ok" and record.cache_status == "bypass"
    assert any(w.startswith("not cached: inputs cannot be hashed") for w in record.warnings)


def test_decorated_functions_skip_the_work_on_a_hit_and_keep_empty_results(root):
    calls: list = []

    @mlobs.component("faces", cache=True, **VERSIONS)
    def faces(frames: list[int]) -> list[int]:
        calls.append(frames)
        if not frames:
            raise mlobs.Empty("no_faces")
        return [f * 2 for f in frames]

    for _ in range(2):
        with capture(root=root) as rec:
            with mlobs.run("youtube", "abc"):
                assert faces([1, 2]) == [2, 4]
                assert faces([]) is None
    assert calls == [[1, 2], []]
    hit_ok, hit_empty = rec.components
    assert (hit_ok.cache_status, hit_ok.status) == ("hit", "ok")
    assert (hit_empty.cache_status, hit_empty.status, hit_empty.empty_reason) == \
        ("hit", "empty", "no_faces")


@dataclass
class Segment:
    start_s: float
    text: str


def test_dataclass_results_and_file_inputs(root, tmp_path):
    audio = tmp_path / "audio.wav"
    audio.write_bytes(b"RIFF....")
    codec = mlobs.JsonCodec(result_type=Segment)
    for expected_status in ("miss", "hit"):
        with capture(root=root) as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", cache=True, codec=codec,
                                   inputs={"audio": FileInput(audio)}, **VERSIONS) as c:
                    if not c.hit:
                        c.set_result(Segment(0.5, "hi"))
                    assert c.result == Segment(0.5, "hi")
        assert rec.component("asr").cache_status == expected_status
    audio.write_bytes(b"RIFF!!!!")  # same name, other content
    with capture(root=root) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", cache=True, codec=codec,
                               inputs={"audio": FileInput(audio)}, **VERSIONS) as c:
                c.set_result(Segment(0.5, "hi"))
    assert rec.component("asr").cache_miss_reason == "input_changed"


def test_the_index_is_readable_json_with_one_current_version(root):
    calls: list = []
    run_once(root, calls)
    run_once(root, calls, cache="bypass")
    index = json.loads((root / "cache" / "youtube" / "abc" / "cache_manifest.json").read_text())
    versions = index["entries"]["asr"]
    assert [v["is_current"] for v in versions] == [False, True]
    assert versions[0]["model_name"] == "whisper-small:r1"
    assert versions[0]["file_path"] == "asr/v1.json"


def test_a_typed_result_without_result_type_is_not_cached_and_says_why(root):
    for _ in range(2):
        with capture(root=root) as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", cache=True, **VERSIONS) as c:
                    assert not c.hit
                    c.set_result(Segment(0.5, "hi"))
    asr = rec.component("asr")
    assert asr.cache_version is None
    assert any("JsonCodec(result_type=Segment)" in w for w in asr.warnings)


def test_version_numbers_are_never_reused_after_a_removal(root):
    calls: list = []
    run_once(root, calls)
    run_once(root, calls, cache="bypass")
    store = ArtifactStore(root / "cache")
    store.remove("youtube", "abc", [store.entry("youtube", "abc", "asr", 2)])
    forced, _ = run_once(root, calls, cache="bypass")
    assert forced.component("asr").cache_version == 3
    assert [e.version for e in store.info("youtube", "abc").versions("asr")] == [1, 3]


def test_capture_keeps_cached_results_out_of_the_working_root(root):
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", cache=True, **VERSIONS) as c:
                c.set_result([1])
    assert rec.component("asr").cache_version == 1
    assert not (root / "cache").exists()


def test_empty_results_come_back_empty_with_a_typed_codec(root):
    codec = mlobs.JsonCodec(result_type=Segment)
    for status in ("miss", "hit"):
        with capture(root=root) as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", cache=True, codec=codec, **VERSIONS) as c:
                    if not c.hit:
                        raise mlobs.Empty("no_speech")
        asr = rec.component("asr")
        assert (asr.cache_status, asr.status, asr.empty_reason) == (status, "empty",
                                                                    "no_speech")


def test_defaults_given_explicitly_are_the_same_inputs(root):
    calls = []

    @mlobs.component("asr", cache=True, **VERSIONS)
    def transcribe(audio: str, language: str = "en") -> str:
        calls.append(language)
        return audio.upper()

    with capture(root=root):
        with mlobs.run("youtube", "abc"):
            transcribe("a")
            transcribe("a", language="en")
            transcribe("a", language="de")
    assert calls == ["en", "de"]


@pytest.mark.parametrize("ttl", [-1, float("nan"), "3", True])
def test_invalid_ttls_are_refused(root, ttl):
    with capture(root=root):
        with mlobs.run("youtube", "abc") as run:
            with pytest.raises(mlobs.ConfigError, match="cache_ttl_days"):
                run.component("asr", cache=True, cache_ttl_days=ttl, **VERSIONS)
