"""The ``@mlobs.component`` decorator: a sync or async function recorded as a component.

The declaration is checked once, when the function is decorated (a
:class:`~mlobs.hooks.spec.ComponentSpec`); each call inside a run opens a component
handle, outside any run the function is called directly. A generator function is one
component per iteration (:mod:`mlobs.hooks.generators`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mlobs.cache.codecs import Codec
from mlobs.core.checks import check_int
from mlobs.core.errors import ConfigError
from mlobs.core.records import ModelRef
from mlobs.hooks.batch_size import BatchSizeChoice
from mlobs.hooks.component import ComponentCall
from mlobs.hooks.context import resolve_run
from mlobs.hooks.generators import async_generator_component, generator_component
from mlobs.hooks.oom import OomPolicy
from mlobs.hooks.retry import RetryPolicy
from mlobs.hooks.run import Run
from mlobs.hooks.spec import ComponentSpec

F = TypeVar("F", bound=Callable[..., Any])


def _accepts_batch_size(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume not
        return False
    return any(p.name == "batch_size" or p.kind is p.VAR_KEYWORD for p in params)


#: arguments never treated as inputs of a cached decorated call.
_NOT_INPUTS = frozenset({"self", "cls", "batch_size"})


def _check_generator_options(name: str, cache: bool | str, on_oom: OomPolicy | None,
                             retry: RetryPolicy | None) -> None:
    """Refuse what has no clear meaning on a stream of items (a generator function)."""
    if cache:
        raise ConfigError(
            f"component {name!r}: cache={cache!r} is not supported on a generator "
            "function (a stream of items is not one cacheable result); cache the "
            "function that computes each item, or collect the items in a function "
            "decorated with cache=True")
    if on_oom is not None or retry is not None:
        raise ConfigError(
            f"component {name!r}: on_oom and retry are not supported on a generator "
            "function (repeating it would yield items again); give them to a component "
            "that computes one item or batch, called from the generator")


def component(name: str | None = None, *, producer_version: str | None = None,
              schema_version: str | None = None, models: Sequence[ModelRef] = (),
              batch_size: int | BatchSizeChoice | None = None, device: str | None = None,
              required: bool | None = None, on_oom: OomPolicy | None = None,
              retry: RetryPolicy | None = None, cache: bool | str = False,
              codec: Codec | None = None, cache_ttl_days: float | None = None
              ) -> Callable[[F], F]:
    """Decorate a sync or async function as component ``name`` (default: its __name__).

    Inside a run (including calls from worker threads of the run's process) each call is
    recorded like ``run.component(...)``; outside any run the function is called directly.
    A failing optional component returns ``None`` (best-effort).

    With ``on_oom`` the function must take a ``batch_size`` argument: each attempt
    receives the current size (a ``batch_size=`` given by the caller is the size to start
    from). With ``on_oom`` or ``retry`` the whole call is the attempt that is repeated.
    Outside a run the policies do not apply: the function is called once, with the
    declared ``batch_size`` unless the caller gives one.

    With ``cache=True`` the call's arguments (all but ``self``, ``cls`` and
    ``batch_size``) are its inputs and its return value is the cached result: on a hit the
    function is not called and the cached value is returned.

    A generator function (sync or async) stays one: its component spans the iteration,
    from the first ``next()`` to its end or ``close()`` (:mod:`mlobs.hooks.generators`).

    Raises:
        ConfigError: invalid arguments, ``on_oom`` on a function without
            ``batch_size``, or ``cache``, ``on_oom`` or ``retry`` on a generator function.
    """
    def decorate(fn: F) -> F:
        spec = ComponentSpec.create(
            name or fn.__name__, producer_version=producer_version,
            schema_version=schema_version, models=models, batch_size=batch_size,
            device=device, required=required, on_oom=on_oom, retry=retry, cache=cache,
            codec=codec, cache_ttl_days=cache_ttl_days)
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            _check_generator_options(spec.name, cache, on_oom, retry)
            if inspect.isasyncgenfunction(fn):
                return async_generator_component(fn, spec)  # type: ignore[return-value]
            return generator_component(fn, spec)  # type: ignore[return-value]
        passes_batch_size = on_oom is not None
        if passes_batch_size and not _accepts_batch_size(fn):
            raise ConfigError(f"component {spec.name!r}: on_oom needs the function to "
                              "take a batch_size argument")
        loops = on_oom is not None or retry is not None
        declared_size = spec.declared_batch_size
        signature = inspect.signature(fn) if cache else None

        def unobserved_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
            if passes_batch_size:
                kwargs.setdefault("batch_size", declared_size)
            return kwargs

        def call_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                bound = signature.bind_partial(*args, **kwargs)  # type: ignore[union-attr]
            except TypeError:  # the call itself will fail with the real message
                return {"args": list(args), "kwargs": kwargs}
            bound.apply_defaults()  # f(x) and f(x, lang="en") with lang="en" by default agree
            return {k: v for k, v in bound.arguments.items() if k not in _NOT_INPUTS}

        def open_call(run: Run, args: tuple[Any, ...], kwargs: dict[str, Any]
                      ) -> ComponentCall:
            size = spec.batch_size
            if passes_batch_size and "batch_size" in kwargs:
                size = check_int("batch_size", kwargs.pop("batch_size"), 1)
            return run.open_component(spec, size,
                                      call_inputs(args, kwargs) if cache else None)

        if inspect.iscoroutinefunction(fn):
            async def call_async(c: ComponentCall, args: tuple[Any, ...],
                                 kwargs: dict[str, Any]) -> Any:
                if not loops:
                    return await fn(*args, **kwargs)
                async for attempt in c.async_attempts():
                    with attempt:
                        if passes_batch_size:
                            kwargs["batch_size"] = c.batch_size
                        return await fn(*args, **kwargs)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = resolve_run(spec.name)
                if run is None:
                    return await fn(*args, **unobserved_kwargs(kwargs))
                # async with: a cache lookup and save run off the event loop
                async with open_call(run, args, kwargs) as c:
                    if not cache:
                        return await call_async(c, args, kwargs)
                    if c.hit:
                        return c.result
                    result = await call_async(c, args, kwargs)
                    c.set_result(result)
                    return result
            return async_wrapper  # type: ignore[return-value]

        def call_sync(c: ComponentCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not loops:
                return fn(*args, **kwargs)
            for attempt in c.attempts():
                with attempt:
                    if passes_batch_size:
                        kwargs["batch_size"] = c.batch_size
                    return fn(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = resolve_run(spec.name)
            if run is None:
                return fn(*args, **unobserved_kwargs(kwargs))
            with open_call(run, args, kwargs) as c:
                if not cache:
                    return call_sync(c, args, kwargs)
                if c.hit:
                    return c.result
                result = call_sync(c, args, kwargs)
                c.set_result(result)
                return result
        return wrapper  # type: ignore[return-value]

    if callable(name):  # used bare: @mlobs.component
        fn, name = name, None
        return decorate(fn)  # type: ignore[return-value]
    return decorate
