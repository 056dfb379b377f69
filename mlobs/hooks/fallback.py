"""Model fallback for predictions: degraded mode (model system rules §11.2).

    chain = [(V2, predict_v2), (V1, predict_v1), (BASELINE, predict_baseline)]
    with run.component("prediction", models=[V2]) as c:
        result = mlobs.predict_with_fallback(chain, features)
        # result.value, result.model, result.prediction_status ("ok" | "degraded")

The models are tried in order; the first that answers gives the result. Inside an observed
component each failed model becomes a ``fallback`` event, and the model that answered
replaces ``models_used`` (so ``model_signature`` names it) with ``prediction_status``
``"ok"`` (the first answered) or ``"degraded"``.

Not every failure falls back:

* ``model_load_failed`` (:class:`mlobs.core.errors.ModelLoadFailed`, or anything a registered
  rule classifies so) stops the chain and propagates: a model that is missing or does not
  load fails fast, it is never answered by another (rules §7);
* :class:`mlobs.Empty`, ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` (and
  other non-``Exception`` signals) propagate untouched;
* when every model fails, the last model's exception propagates.

There are no retries here: a transient failure moves on to the next model. Retry a model
before it counts as failed by wrapping its predictor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mlobs.core.classify import classify_exception, exception_message, exception_type_name
from mlobs.core.errors import ConfigError, Empty
from mlobs.core.records import ModelRef
from mlobs.hooks.context import current

__all__ = ["FALLBACK_EVENT", "FallbackFailure", "FallbackResult", "predict_with_fallback"]

T = TypeVar("T")

#: kind of the event recorded for each model that failed in a chain.
FALLBACK_EVENT = "fallback"
#: error_code that stops the chain (rules §7: no fallback when a model does not load).
_FAIL_FAST = "model_load_failed"


@dataclass(frozen=True)
class FallbackFailure:
    """A model of the chain that failed.

    Args:
        model: the model that failed.
        error_code: its classification (:func:`mlobs.classify_exception`).
        error_type: the exception's class ``__qualname__``.
        message: the exception's text, cut to ``ERROR_MESSAGE_MAX_CHARS`` (2000).
    """

    model: ModelRef
    error_code: str
    error_type: str
    message: str


@dataclass(frozen=True)
class FallbackResult(Generic[T]):
    """What :func:`predict_with_fallback` returns.

    Args:
        value: the prediction of the model that answered.
        model: that model.
        prediction_status: ``"ok"`` when the chain's first model answered, else
            ``"degraded"`` (rules §11.2).
        failures: the models that failed before it, in chain order.
    """

    value: T
    model: ModelRef
    prediction_status: str
    failures: tuple[FallbackFailure, ...] = ()

    @property
    def degraded(self) -> bool:
        return self.prediction_status == "degraded"


def _check_chain(chain: Sequence[tuple[ModelRef, Callable[..., T]]]
                 ) -> tuple[tuple[ModelRef, Callable[..., T]], ...]:
    try:
        links = tuple(chain)
    except TypeError:
        raise ConfigError(f"the fallback chain must be a sequence of (ModelRef, callable) "
                          f"pairs, got {chain!r:.80}") from None
    if not links:
        raise ConfigError("the fallback chain is empty: it needs at least one "
                          "(ModelRef, callable) pair")
    for i, link in enumerate(links):
        if (not isinstance(link, tuple) or len(link) != 2 or not isinstance(link[0], ModelRef)
                or not callable(link[1])):
            raise ConfigError(f"fallback chain entry {i} must be a (ModelRef, callable) "
                              f"pair, got {link!r:.80}")
    return links


def _add_note(exc: BaseException, failures: list[FallbackFailure]) -> None:
    # Outside a run nothing records the earlier failures: the traceback shows them.
    if len(failures) > 1 and hasattr(exc, "add_note"):  # Python >= 3.11
        tried = "; ".join(f"{f.model.name}:{f.model.version} {f.error_code} "
                          f"({f.error_type})" for f in failures)
        exc.add_note(f"mlobs fallback chain: every model failed: {tried}")


def predict_with_fallback(chain: Sequence[tuple[ModelRef, Callable[..., T]]], /,
                          *args: Any, **kwargs: Any) -> FallbackResult[T]:
    """Call each model's predictor in order until one answers (rules §11.2).

    Args:
        chain: ``(model, predictor)`` pairs, preferred model first, e.g. v2, v1, baseline.
        *args, **kwargs: passed to every predictor as they are.

    Returns:
        the value of the first predictor that returned, which model it was,
        ``prediction_status`` (``"ok"`` for the first model, else ``"degraded"``) and the
        failures before it. Inside an observed component it also calls
        ``c.set_prediction(model, prediction_status)``, and records a ``fallback`` event
        per failed model (attributes ``model_name``, ``model_version``, ``error_code``,
        ``error_type``, ``message``), the failures that end the chain included.

    Raises:
        ConfigError: the chain is empty or an entry is not a ``(ModelRef, callable)`` pair
            (checked before any predictor runs).
        the failure classified ``model_load_failed``: at once; later models are not tried.
        Empty, KeyboardInterrupt, SystemExit, ...: untouched, at once.
        the last model's exception: when every model failed (on Python 3.11+ with a note
            listing each failure).
    """
    links = _check_chain(chain)
    handle = current()
    failures: list[FallbackFailure] = []
    last = len(links) - 1
    for i, (model, predict) in enumerate(links):
        try:
            value = predict(*args, **kwargs)
        except Empty:
            raise
        except Exception as exc:
            failure = FallbackFailure(model, classify_exception(exc), exception_type_name(exc),
                                      exception_message(exc))
            failures.append(failure)
            handle.event(FALLBACK_EVENT, model_name=model.name, model_version=model.version,
                         error_code=failure.error_code, error_type=failure.error_type,
                         message=failure.message)
            if failure.error_code == _FAIL_FAST:
                raise
            if i == last:
                _add_note(exc, failures)
                raise
            continue
        status = "ok" if i == 0 else "degraded"
        handle.set_prediction(model, status)
        return FallbackResult(value, model, status, tuple(failures))
    raise AssertionError("unreachable: the last model either answers or raises")
