"""model_signature, config_hash and the idempotency key: golden values and rules."""

import hashlib
from dataclasses import replace

import pytest

import mlobs
from mlobs.testing import capture

WHISPER = mlobs.ModelRef(name="openai/whisper-small", version="rev-1",
                         weights_digest="sha256:" + "ab" * 32, runtime="inprocess",
                         engine="torch", precision="fp16", device="cuda:0")
# Golden values: a change here breaks every user's cache; bump SIGNATURE_VERSION instead.
GOLDEN = {
    "whisper": "b670ca1847fae5088562d15a7433e1ab08d5ef8d4338fa0c28cb134977ffe40f",
    "config": "94a786c3662bc7beeb598efa7d8cb58d7bea25d6c275ea9785a0230ff1f8c2ba",
    "key": "8c33021d0b30edb2bc963a15ebaaff8affb5c36d8877252bed216f2a7accdc22",
}


def test_golden_signature_and_config_hash():
    assert mlobs.model_signature([WHISPER]) == GOLDEN["whisper"]
    assert mlobs.config_hash({"b": 1, "a": [1, 2]}) == GOLDEN["config"]


@pytest.mark.parametrize("change", [
    {"engine": "tensorrt"}, {"precision": "fp32"}, {"weights_digest": "sha256:" + "cd" * 32},
    {"version": "rev-2"}, {"name": "openai/whisper-base"}, {"runtime": "triton"},
    {"device": "cpu"},
])
def test_what_changes_the_signature(change):
    assert mlobs.model_signature([replace(WHISPER, **change)]) != mlobs.model_signature([WHISPER])


def test_device_index_does_not_change_the_signature_but_is_recorded():
    on_gpu1 = replace(WHISPER, device="cuda:1")
    assert mlobs.model_signature([on_gpu1]) == mlobs.model_signature([WHISPER])
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", models=[WHISPER]):
                pass
            with run.component("asr", models=[on_gpu1]):
                pass
    first, second = sorted(rec.components, key=lambda c: c.attempt)
    assert first.model_signature == second.model_signature
    assert (first.device_used, second.device_used) == ("cuda:0", "cuda:1")
    assert rec.run().resolved_models == {"asr": ["openai/whisper-small:rev-1"]}


def test_order_of_models_does_not_matter_and_no_models_means_none():
    other = mlobs.ModelRef(name="pyannote", version="3", engine="torch", device="cuda:0")
    assert mlobs.model_signature([WHISPER, other]) == mlobs.model_signature([other, WHISPER])
    assert mlobs.model_signature([]) is None


def key(**overrides):
    parts = dict(platform_id="youtube", video_id="abc", component="asr",
                 config_hash=mlobs.config_hash({"lang": "en"}), sampling_policy_version="1",
                 producer_version="2.1.0", schema_version="3",
                 model_signature=mlobs.model_signature([WHISPER]))
    parts.update(overrides)
    return mlobs.idempotency_key(**parts)


def test_idempotency_key_is_stable_and_names_what_changed():
    assert key().digest == key().digest == GOLDEN["key"]
    new_model = key(model_signature=mlobs.model_signature([replace(WHISPER, engine="onnx")]))
    assert new_model.digest != key().digest
    assert new_model.changed_parts(key()) == ["model_signature"]
    assert key(producer_version="2.2", schema_version="4").changed_parts(key()) == [
        "producer_version", "schema_version"]


def test_hashes_are_hex_sha256():
    for value in (mlobs.model_signature([WHISPER]), mlobs.config_hash({}), key().digest):
        assert len(value) == 64 and int(value, 16) >= 0


def test_signature_is_sha256_of_the_documented_canonical_form():
    canonical = (
        '{"models":[{"device_kind":"cuda","engine":"torch","model_name":"openai/whisper-small",'
        '"model_version":"rev-1","precision":"fp16","runtime":"inprocess",'
        '"weights_digest":"sha256:' + "ab" * 32 + '"}],"v":1}')
    assert hashlib.sha256(canonical.encode()).hexdigest() == GOLDEN["whisper"]
    assert hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest() == GOLDEN["config"]
