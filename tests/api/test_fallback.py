"""Prediction fallback v2 → v1 → baseline (model system rules §11.2, §7).

The predictors are HTTP clients of a real local server (:mod:`support.flaky_server`), so
the failures are the ones urllib really raises, and the server counts which models were
asked.
"""

import json
import sys
import urllib.error
import urllib.request

import pytest

import mlobs
from mlobs.core.errors import ModelLoadFailed
from mlobs.core.limits import ERROR_MESSAGE_MAX_CHARS
from mlobs.hooks.fallback import FallbackFailure, FallbackResult, predict_with_fallback
from mlobs.testing import capture
from support.flaky_server import FlakyServer, refused_port

V2 = mlobs.ModelRef("views-forecast", "v2", "sha256:" + "2" * 64, runtime="http",
                    engine="torch", precision="fp16", device="cuda:0")
V1 = mlobs.ModelRef("views-forecast", "v1", "sha256:" + "1" * 64, runtime="http",
                    engine="onnx", precision="fp32", device="cuda:0")
BASELINE = mlobs.ModelRef("views-baseline", "2024.1", "sha256:" + "b" * 64, runtime="http",
                          engine="sklearn", device="cpu")


@pytest.fixture
def server():
    with FlakyServer() as s:
        yield s


def http_predictor(url: str, timeout_s: float = 5.0):
    """A predictor POSTing the features to ``url`` and returning the decoded answer."""
    def predict(features: dict) -> dict:
        request = urllib.request.Request(url, data=json.dumps(features).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    return predict


def chain_of(server, v2=None, v1=None, baseline=None):
    return [(V2, v2 or http_predictor(server.url("/v2"))),
            (V1, v1 or http_predictor(server.url("/v1"))),
            (BASELINE, baseline or http_predictor(server.url("/baseline")))]


def fallback_events(record):
    return [e for e in record.events if e.kind == "fallback"]


def test_degraded_when_v2_and_v1_fail(server):
    server.script("/v2", "500")
    server.script("/v1", "503")
    server.script("/baseline", '200:{"views_p50": 1200}')
    with capture() as rec:
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction", producer_version="1.0", models=[V2]):
                result = predict_with_fallback(chain_of(server), {"subscribers": 10})
    assert result == FallbackResult(
        {"views_p50": 1200}, BASELINE, "degraded",
        (FallbackFailure(V2, "internal", "HTTPError", "HTTP Error 500: Internal Server Error"),
         FallbackFailure(V1, "transient", "HTTPError", "HTTP Error 503: Service Unavailable")))
    assert result.degraded
    assert [h.body for h in server.hits("/baseline")] == [b'{"subscribers": 10}']
    assert [server.count(p) for p in ("/v2", "/v1", "/baseline")] == [1, 1, 1]

    prediction = rec.component("prediction")
    assert prediction.status == "ok" and run.status == "ok"
    assert prediction.prediction_status == "degraded"
    assert prediction.models_used == [BASELINE]
    assert prediction.model_signature == mlobs.model_signature([BASELINE])
    assert prediction.model_signature != mlobs.model_signature([V2])
    assert prediction.device_used == "cpu"  # the baseline's device, not v2's
    events = fallback_events(prediction)
    assert [e.attributes for e in events] == [
        {"model_name": "views-forecast", "model_version": "v2", "error_code": "internal",
         "error_type": "HTTPError", "message": "HTTP Error 500: Internal Server Error"},
        {"model_name": "views-forecast", "model_version": "v1", "error_code": "transient",
         "error_type": "HTTPError", "message": "HTTP Error 503: Service Unavailable"},
    ]
    assert events[0].occurred_at <= events[1].occurred_at
    assert all(e.component_run_id == prediction.component_run_id for e in events)
    assert rec.run().resolved_models == {"prediction": ["views-baseline:2024.1"]}


def test_first_model_answering_is_ok_without_events(server):
    server.script("/v2", '200:{"views_p50": 1500}')
    with capture() as rec:
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction", models=[V2]):
                result = predict_with_fallback(chain_of(server), {"subscribers": 10})
    assert (result.value, result.model, result.prediction_status, result.failures) == (
        {"views_p50": 1500}, V2, "ok", ())
    assert [server.count(p) for p in ("/v2", "/v1", "/baseline")] == [1, 0, 0]
    prediction = rec.component("prediction")
    assert prediction.prediction_status == "ok"
    assert prediction.models_used == [V2]
    assert prediction.model_signature == mlobs.model_signature([V2])
    assert fallback_events(prediction) == []


def test_v1_answering_after_a_connection_failure(server):
    server.script("/v2", "reset")
    server.script("/v1", '200:{"views_p50": 900}')
    with capture() as rec:
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction", models=[V2]):
                result = predict_with_fallback(chain_of(server), {})
    assert (result.model, result.prediction_status) == (V1, "degraded")
    prediction = rec.component("prediction")
    assert prediction.models_used == [V1] and prediction.prediction_status == "degraded"
    assert [(e.attributes["model_version"], e.attributes["error_code"])
            for e in fallback_events(prediction)] == [("v2", "transient")]
    assert server.count("/baseline") == 0


def test_model_load_failure_fails_fast(server):
    server.script("/v2/weights", "404")  # the model store has no weights for v2
    server.script("/baseline", '200:{"views_p50": 1200}')

    def predict_v2(features):
        try:
            urllib.request.urlopen(server.url("/v2/weights"), timeout=5)
        except urllib.error.HTTPError as exc:
            raise ModelLoadFailed(f"views-forecast:v2 weights: {exc}") from exc

    with capture() as rec:
        with pytest.raises(ModelLoadFailed, match="v2 weights"):
            with mlobs.run("youtube", "abc123") as run:
                with run.component("prediction", models=[V2]):
                    predict_with_fallback(chain_of(server, v2=predict_v2), {})
    assert server.count("/v2/weights") == 1
    assert server.count("/v1") == 0 and server.count("/baseline") == 0  # never asked
    prediction = rec.component("prediction")
    assert (prediction.status, prediction.error_code, prediction.error_type) == (
        "error", "model_load_failed", "ModelLoadFailed")
    assert prediction.prediction_status is None
    assert prediction.models_used == [V2]  # the model that failed to load
    assert [(e.attributes["model_version"], e.attributes["error_code"])
            for e in fallback_events(prediction)] == [("v2", "model_load_failed")]
    assert rec.run().status == "error" and rec.run().error_code == "model_load_failed"


def test_model_load_failure_after_a_fallback_stops_the_chain(server):
    server.script("/v2", "503")

    def predict_v1(features):
        raise ModelLoadFailed("views-forecast:v1: engine file is corrupt")

    with capture() as rec:
        with pytest.raises(ModelLoadFailed):
            with mlobs.run("youtube", "abc123") as run:
                with run.component("prediction", models=[V2]):
                    predict_with_fallback(chain_of(server, v1=predict_v1), {})
    assert server.count("/baseline") == 0
    prediction = rec.component("prediction")
    assert prediction.error_code == "model_load_failed"
    assert [(e.attributes["model_version"], e.attributes["error_code"])
            for e in fallback_events(prediction)] == [("v2", "transient"),
                                                       ("v1", "model_load_failed")]


def test_every_model_failing_raises_the_last_error(server):
    server.script("/v2", "500")
    server.script("/v1", "503")
    server.script("/baseline", "hang:5")
    chain = chain_of(server, baseline=http_predictor(server.url("/baseline"), timeout_s=0.2))
    with capture() as rec:
        with pytest.raises(TimeoutError) as info:
            with mlobs.run("youtube", "abc123") as run:
                with run.component("prediction", models=[V2]):
                    predict_with_fallback(chain, {})
    assert [server.count(p) for p in ("/v2", "/v1", "/baseline")] == [1, 1, 1]
    prediction = rec.component("prediction")
    assert (prediction.status, prediction.error_code, prediction.error_type) == (
        "error", "timeout", "TimeoutError")
    assert prediction.prediction_status is None
    assert [(e.attributes["model_version"], e.attributes["error_code"])
            for e in fallback_events(prediction)] == [("v2", "internal"), ("v1", "transient"),
                                                       ("2024.1", "timeout")]
    if sys.version_info >= (3, 11):
        assert "every model failed" in info.value.__notes__[0]


def test_every_model_failing_in_an_optional_component_keeps_the_run_ok(server):
    server.script("/v2", "503")
    server.script("/v1", "503")
    with refused_port() as port, capture() as rec:
        chain = chain_of(server, baseline=http_predictor(f"http://127.0.0.1:{port}/"))
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction", models=[V2], required=False):
                predict_with_fallback(chain, {})
    prediction = rec.component("prediction")
    assert (prediction.status, prediction.error_code, prediction.error_type) == (
        "error", "transient", "URLError")
    assert len(fallback_events(prediction)) == 3
    assert run.status == "ok"


def test_outside_a_run_it_just_works(server):
    server.script("/v2", "500")
    server.script("/v1", '200:{"views_p50": 7}')
    result = predict_with_fallback(chain_of(server), {"subscribers": 1})
    assert (result.value, result.model, result.prediction_status) == (
        {"views_p50": 7}, V1, "degraded")
    assert [(f.model, f.error_code) for f in result.failures] == [(V2, "internal")]


def test_arguments_reach_every_predictor():
    seen = []

    def failing(*args, **kwargs):
        seen.append(("v2", args, kwargs))
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def answering(*args, **kwargs):
        seen.append(("v1", args, kwargs))
        return 42

    result = predict_with_fallback([(V2, failing), (V1, answering)], 1, 2, horizon_days=7)
    assert result.value == 42 and result.failures[0].error_code == "oom"
    assert seen == [("v2", (1, 2), {"horizon_days": 7}), ("v1", (1, 2), {"horizon_days": 7})]


def test_long_messages_are_cut():
    def failing():
        raise ValueError("x" * (ERROR_MESSAGE_MAX_CHARS + 500))

    with capture() as rec:
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction"):
                result = predict_with_fallback([(V2, failing), (BASELINE, lambda: 0)])
    assert len(result.failures[0].message) == ERROR_MESSAGE_MAX_CHARS
    event, = fallback_events(rec.component("prediction"))
    assert event.attributes["message"] == result.failures[0].message


def test_empty_and_interrupts_propagate_untouched():
    called = []

    def baseline():
        called.append("baseline")
        return 0

    def no_input():
        raise mlobs.Empty("no_history")

    with capture() as rec:
        with mlobs.run("youtube", "abc123") as run:
            with run.component("prediction"):
                predict_with_fallback([(V2, no_input), (BASELINE, baseline)])
    prediction = rec.component("prediction")
    assert (prediction.status, prediction.empty_reason) == ("empty", "no_history")
    assert fallback_events(prediction) == []

    for signal in (KeyboardInterrupt, SystemExit, GeneratorExit):
        def interrupted(signal=signal):
            raise signal()

        with pytest.raises(signal):
            predict_with_fallback([(V2, interrupted), (BASELINE, baseline)])
    assert called == []


def test_a_bad_chain_is_a_config_error():
    with pytest.raises(mlobs.ConfigError, match="empty"):
        predict_with_fallback([])
    with pytest.raises(mlobs.ConfigError, match="entry 1"):
        predict_with_fallback([(V2, lambda: 1), ("v1", lambda: 2)])
    with pytest.raises(mlobs.ConfigError, match="entry 0"):
        predict_with_fallback([(V2, "not callable")])
    with pytest.raises(mlobs.ConfigError):
        predict_with_fallback(None)
