"""Generator functions under ``@mlobs.component``: one component spanning the iteration.

A decorated generator function (``def`` with ``yield``, or ``async def`` with ``yield``)
stays a generator function: calling it records nothing and runs none of its body. The
component is entered at the first ``next()`` / ``__anext__()``, in the run current there,
and ends when the generator

* is exhausted: ``ok`` (or ``empty`` after ``mlobs.current().empty(reason)``);
* raises: the status rules of :mod:`mlobs.hooks.component` (a failing required component
  propagates; a failing optional one, or ``raise mlobs.Empty(reason)``, just ends the
  iteration);
* is closed before its end (``close()``/``aclose()``, ``break`` in an ``async for`` that
  is then finalised, garbage collection): ``ok`` with
  :data:`~mlobs.hooks.component.CLOSED_EARLY_WARNING`.

Its ``duration_ms`` and memory peaks cover the whole iteration, the consumer's time
between items included. ``send()`` and ``throw()`` reach the body as without mlobs. A
generator never iterated records nothing; outside any run it runs unobserved.

Context: a generator's body runs in its consumer's context, one step at a time. The
component is the current one (``mlobs.current()``) only while the body runs: each step
gives the body its value of the component variable and the consumer its own back before
the item is returned, so neither leaks into the other between steps (a component the body
opens across a ``yield`` is its current one again at the next step).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from mlobs.hooks.component import ComponentCall
from mlobs.hooks.context import current_component_var, resolve_run
from mlobs.hooks.spec import ComponentSpec

_var = current_component_var


class _Steps:
    """The component variable around each step of a generator spanning ``call``: the
    body's value while the body runs, the consumer's in between."""

    __slots__ = ("call", "body", "consumer")

    def __init__(self, call: ComponentCall) -> None:
        self.call = call
        self.consumer = _var.get()
        call.__enter__()  # the clocks start at the first step; the variable is the call
        self.body: Any = call

    def suspend(self) -> None:
        """The body yielded: the consumer's value goes back."""
        self.body = _var.get()
        _var.set(self.consumer)

    def resume(self) -> None:
        """The consumer asked for more: the body's value goes back."""
        self.consumer = _var.get()
        _var.set(self.body)

    def end(self, exc: BaseException | None) -> bool:
        """End the component (called while the body's value is set); True: swallow
        ``exc``."""
        try:
            if exc is None:
                return self.call.__exit__(None, None, None)
            return self.call.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            _var.set(self.consumer)


class _Unobserved:
    """:class:`_Steps` outside any run: nothing to switch, nothing to record."""

    __slots__ = ()

    def suspend(self) -> None: ...
    def resume(self) -> None: ...

    def end(self, exc: BaseException | None) -> bool:
        return False


_UNOBSERVED = _Unobserved()


def generator_component(fn: Callable[..., Generator[Any, Any, Any]], spec: ComponentSpec
                        ) -> Callable[..., Generator[Any, Any, Any]]:
    """``fn`` (a generator function) recorded as component ``spec``, one component per
    iteration (see the module docstring). The result is a generator function too."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        inner = fn(*args, **kwargs)
        run = resolve_run(spec.name)
        if run is None:
            return (yield from inner)
        steps = _Steps(run.open_component(spec, spec.batch_size))
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                item = inner.send(sent) if thrown is None else inner.throw(thrown)
            except StopIteration as stop:
                steps.end(None)
                return stop.value
            except BaseException as exc:
                if steps.end(exc):
                    return None
                raise
            steps.suspend()
            try:
                sent, thrown = (yield item), None
            except GeneratorExit as closing:
                steps.resume()
                try:
                    inner.close()
                except BaseException as exc:  # the body failed while closing
                    if not steps.end(exc):
                        raise
                else:
                    steps.end(closing)
                raise
            except BaseException as exc:  # the consumer's throw(): into the body
                sent, thrown = None, exc
            steps.resume()
    return wrapper


def async_generator_component(fn: Callable[..., AsyncGenerator[Any, Any]],
                              spec: ComponentSpec) -> Callable[..., AsyncGenerator[Any, Any]]:
    """:func:`generator_component` for an async generator function: ``__anext__``,
    ``asend``, ``athrow`` and ``aclose`` reach the body as without mlobs."""
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        inner = fn(*args, **kwargs)
        run = resolve_run(spec.name)
        steps = _UNOBSERVED if run is None else _Steps(run.open_component(spec,
                                                                          spec.batch_size))
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                item = await (inner.asend(sent) if thrown is None else inner.athrow(thrown))
            except StopAsyncIteration:
                steps.end(None)
                return
            except BaseException as exc:
                if steps.end(exc):
                    return
                raise
            steps.suspend()
            try:
                sent, thrown = (yield item), None
            except GeneratorExit as closing:
                steps.resume()
                try:
                    await inner.aclose()
                except BaseException as exc:  # the body failed while closing
                    if not steps.end(exc):
                        raise
                else:
                    steps.end(closing)
                raise
            except BaseException as exc:  # the consumer's athrow(): into the body
                sent, thrown = None, exc
            steps.resume()
    return wrapper
