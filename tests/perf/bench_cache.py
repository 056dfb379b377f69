"""Cost of a component cache hit on a ~1 MB JSON result, against plain ``json.load``.

A realistic result (ASR transcript segments with word timings, ~1 MB of JSON) is stored
once through a real component with ``cache=True``; then, in the same process and
interleaved so that drift in machine load hits every figure alike, single calls are
timed (median over ``SAMPLES`` calls, in ms):

* cache hit:       the whole ``with run.component(..., cache=True) as c: c.result`` on a
                   hit (key and input hash, index read, file read, SHA-256 check, JSON
                   decode, the record built and handed to the recorder; no sinks)
* lookup + hash:   ``input_hash(inputs)`` and :func:`mlobs.cache.lookup.lookup` alone,
                   i.e. the ArtifactStore part of a hit without the component around it
* SHA-256:         the digest of the version file's bytes (the integrity check a load
                   makes), for scale
* json.load:       ``json.load(open(path))`` of the same version file: the baseline

Freeing a result is not in any figure (see :func:`_time_ms`).

The inputs are small JSON values (an upstream digest and options), as when a component
declares the hash of its upstream result; a ``FileInput`` would add the hashing of that
file to every hit.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLES = 60
WARMUP = 5
TARGET_BYTES = 1_000_000
INPUTS = {"audio_sha256": "9f2c" * 16, "language": "en", "beam_size": 5}
WORDS = ("the", "model", "we", "trained", "on", "lecture", "audio", "shows", "that",
         "attention", "weights", "gradient", "descent", "converges", "quickly", "when",
         "learning", "rate", "is", "warmed", "up", "and", "then", "decayed", "slowly")


def transcript(target_bytes: int = TARGET_BYTES) -> list[dict[str, Any]]:
    """ASR segments with word timings, grown until their JSON is ~``target_bytes``."""
    rng = random.Random(0)
    segments: list[dict[str, Any]] = []
    size, t = 2, 0.0
    while size < target_bytes:
        words, start = [], t
        for _ in range(rng.randrange(8, 20)):
            duration = round(rng.uniform(0.12, 0.6), 3)
            words.append({"word": rng.choice(WORDS), "start": round(t, 3),
                          "end": round(t + duration, 3),
                          "probability": round(rng.uniform(0.6, 1.0), 4)})
            t += duration + round(rng.uniform(0.0, 0.15), 3)
        segment = {"id": len(segments), "start": round(start, 3), "end": round(t, 3),
                   "speaker": f"SPEAKER_{rng.randrange(3):02d}",
                   "text": " ".join(w["word"] for w in words),
                   "avg_logprob": round(rng.uniform(-0.6, -0.05), 4),
                   "no_speech_prob": round(rng.uniform(0.0, 0.1), 4), "words": words}
        segments.append(segment)
        size += len(json.dumps(segment, separators=(",", ":"))) + 1
    return segments


def _time_ms(call: Callable[[], Any]) -> float:
    """One call's time; freeing its result is left out, for every figure alike.

    The result is kept until the clock stops, then dropped and the cyclic collector run
    outside the timing: a hit's ComponentCall and its cache state refer to each other, so
    the cached value is freed by the collector, at whatever call runs next, not when
    ``hit()`` returns; without this the ~12k dicts of one figure would be freed inside
    another's timing.
    """
    gc.collect()
    start = time.perf_counter_ns()
    result = call()
    elapsed = (time.perf_counter_ns() - start) / 1e6
    del result
    gc.collect()
    return elapsed


def main() -> dict[str, float]:
    import mlobs
    from mlobs.cache.inputs import input_hash
    from mlobs.cache.lookup import lookup
    from mlobs.core.signature import idempotency_key, model_signature
    from mlobs.recording.recorder import get_recorder

    segments = transcript()
    with tempfile.TemporaryDirectory() as root:
        mlobs.configure(root=root, sinks=[])
        options = {"producer_version": "1", "schema_version": "1", "cache": True,
                   "inputs": INPUTS}
        with mlobs.run("bench", "lecture-01") as run:
            with run.component("asr", **options) as c:
                assert not c.hit
                c.set_result(segments)
            run_record = run.record
            version = c.cache_version

            def hit() -> Any:
                with run.component("asr", **options) as call:
                    return call.result

            assert hit() == segments, "the cached result did not round-trip"
            store = get_recorder().artifact_store
            entry = store.entry("bench", "lecture-01", "asr", version)
            path = store.video_dir("bench", "lecture-01") / entry.file_path
            key = idempotency_key(
                platform_id="bench", video_id="lecture-01", component="asr",
                config_hash=run_record.config_hash,
                sampling_policy_version=run_record.sampling_policy_version,
                producer_version="1", schema_version="1", model_signature=model_signature(()))
            assert key.digest == entry.key_digest

            def lookup_and_hash() -> Any:
                found = lookup(store, key, input_hash(INPUTS))
                assert found.hit
                return found.value

            data = Path(path).read_bytes()

            def sha256() -> str:
                import hashlib
                return hashlib.sha256(data).hexdigest()

            def plain_json_load() -> Any:
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle)

            calls = {"cache hit": hit, "lookup + hash": lookup_and_hash,
                     "SHA-256 of the file": sha256, "json.load": plain_json_load}
            samples: dict[str, list[float]] = {name: [] for name in calls}
            for round_ in range(WARMUP + SAMPLES):
                for name, call in calls.items():  # interleaved: drift hits all alike
                    elapsed = _time_ms(call)
                    if round_ >= WARMUP:
                        samples[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["json.load"]
    print(f"component cache hit on a {len(data) / 1e6:.2f} MB JSON result "
          f"({len(segments)} transcript segments), median of {SAMPLES} calls (ms)")
    for name, value in medians.items():
        print(f"  {name:<22} {value:8.3f} ms   {value / baseline:5.2f}× json.load")
    overhead = medians["cache hit"] - baseline
    around = medians["cache hit"] - medians["lookup + hash"]
    print(f"  a hit costs {overhead:+.3f} ms over reading the file with json.load; the "
          f"component around the lookup adds {around:+.3f} ms (differences of medians: "
          "within noise when near 0)")
    return {"hit_ms": medians["cache hit"], "lookup_ms": medians["lookup + hash"],
            "sha256_ms": medians["SHA-256 of the file"], "json_load_ms": baseline,
            "result_bytes": float(len(data))}


if __name__ == "__main__":
    main()
