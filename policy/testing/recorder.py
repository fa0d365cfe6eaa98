"""Recorders: every hook the host calls, and every call made to a handler, with its result.

:class:`HookRecorder` is a plugin object implementing every hook of
:mod:`policy.hookspecs` (found at runtime, so a new hook is recorded without a change
here); pass it to a host as an extra plugin and read ``.calls``.

:class:`CallRecorder` is a plugin too: on ``policy_config_loaded`` it wraps every
handler of the snapshot in a :class:`RecordingHandler`, which records each ``check``,
``quota``, ``report`` and ``close`` with the instance, the quota arguments and the
result (or the exception) before passing it on unchanged. Calls answered from the
decision cache never reach a handler, so they are not recorded: that is the point.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from policy import hookspecs
from policy.sdk import PROJECT, Handler, hookimpl


def hook_specs() -> dict[str, Callable[..., Any]]:
    """Every hook specification in :mod:`policy.hookspecs`, by name."""
    marker = f"{PROJECT}_spec"
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and name.startswith(f"{PROJECT}_") and hasattr(fn, marker)}


@dataclass(frozen=True)
class HookCall:
    """One hook call: the hook's name and the arguments it was given."""

    name: str
    kwargs: dict[str, Any]


class HookRecorder:
    """A plugin that records every hook call made to it, in order.

    ``attributes`` is what its ``policy_attributes`` returns (None: declares nothing).
    """

    def __init__(self, attributes: dict[str, Any] | None = None) -> None:
        self.calls: list[HookCall] = []
        self.attributes = attributes
        for name, spec in hook_specs().items():
            setattr(self, name, hookimpl(self._recorder(name, spec)))

    def _recorder(self, name: str, spec: Callable[..., Any]) -> Callable[..., Any]:
        names = list(inspect.signature(spec).parameters)

        @functools.wraps(spec)  # pluggy reads the parameter names through __wrapped__
        def record(*args: Any) -> Any:  # pluggy passes the arguments positionally, in that order
            self.calls.append(HookCall(name, dict(zip(names, args, strict=True))))
            return self.attributes if name == f"{PROJECT}_attributes" else None

        record.__dict__.pop(f"{PROJECT}_spec", None)  # copied by wraps; this is an implementation
        return record

    def names(self) -> list[str]:
        """The names of the hooks called, in call order."""
        return [call.name for call in self.calls]

    def called(self, name: str) -> list[HookCall]:
        """The calls of one hook."""
        return [call for call in self.calls if call.name == name]


@dataclass(frozen=True)
class HandlerCallRecord:
    """One call to a handler.

    :param handler: the handler's name in config.
    :param method: ``check``, ``quota``, ``report`` or ``close``.
    :param instance: the instance (``report``: the batch, a list; ``close``: None).
    :param args: the :class:`~policy.QuotaArgs` of a quota call, else None.
    :param result: what the method returned (None when it raised).
    :param error: what it raised, else None.
    """

    handler: str
    method: str
    instance: Any
    args: Any = None
    result: Any = None
    error: BaseException | None = None


class RecordingHandler(Handler):
    """Wraps a handler: records each call in a :class:`CallRecorder`, then answers as the handler did.

    Each wrapped method is a coroutine function exactly when the handler's is, so the
    host calls the wrapper the way it would have called the handler.
    """

    def __init__(self, wrapped: Handler, name: str, recorder: "CallRecorder") -> None:
        self.wrapped = wrapped
        self.handler_name = name
        self._recorder = recorder
        for method in ("check", "quota", "report", "close"):
            target = getattr(wrapped, method, None)
            if target is not None:
                setattr(self, method, self._wrap(method, target))

    def _wrap(self, method: str, target: Callable[..., Any]) -> Callable[..., Any]:
        record = self._recorder._add
        name = self.handler_name

        def split(args: tuple[Any, ...]) -> tuple[Any, Any]:
            instance = list(args[0]) if method == "report" and args else (args[0] if args else None)
            return instance, args[1] if len(args) > 1 else None

        if inspect.iscoroutinefunction(target):
            async def call_async(*args: Any) -> Any:
                instance, extra = split(args)
                try:
                    result = await target(*args)
                except BaseException as exc:
                    record(HandlerCallRecord(name, method, instance, extra, None, exc))
                    raise
                record(HandlerCallRecord(name, method, instance, extra, result))
                return result

            return call_async

        def call(*args: Any) -> Any:
            instance, extra = split(args)
            try:
                result = target(*args)
            except BaseException as exc:
                record(HandlerCallRecord(name, method, instance, extra, None, exc))
                raise
            record(HandlerCallRecord(name, method, instance, extra, result))
            return result

        return call

    async def start(self) -> None:
        """Start the wrapped handler."""
        result = self.wrapped.start()
        if inspect.isawaitable(result):
            await result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class CallRecorder:
    """A plugin that records every call to the handlers of each config snapshot loaded.

    Use it as an extra plugin (``policy_service_factory(config, recorder)``), or wrap a
    single handler with :meth:`wrap` in a unit test.
    """

    def __init__(self) -> None:
        self.calls: list[HandlerCallRecord] = []
        self._lock = threading.Lock()  # sync report handlers run in worker threads

    def _add(self, record: HandlerCallRecord) -> None:
        with self._lock:
            self.calls.append(record)

    def wrap(self, handler: Handler, name: str = "handler") -> RecordingHandler:
        """Wrap one handler (already wrapped ones are returned as they are)."""
        if isinstance(handler, RecordingHandler):
            return handler
        return RecordingHandler(handler, name, self)

    def attach(self, snapshot: Any) -> None:
        """Wrap every handler of a snapshot in place (what the hook does on each load)."""
        for entry in snapshot.handlers.values():
            entry.handler = self.wrap(entry.handler, entry.name)

    @hookimpl
    def policy_config_loaded(self, snapshot: Any) -> None:
        """Wrap the handlers of each snapshot as it comes into force."""
        self.attach(snapshot)

    def of(self, handler: str | None = None, method: str | None = None) -> list[HandlerCallRecord]:
        """The calls of one handler and/or one method (None: any)."""
        with self._lock:
            return [c for c in self.calls
                    if (handler is None or c.handler == handler) and (method is None or c.method == method)]

    def instances(self, handler: str | None = None, method: str = "check") -> list[Any]:
        """The instances a handler received (for ``report``, flattened from the batches)."""
        out: list[Any] = []
        for call in self.of(handler, method):
            out.extend(call.instance if method == "report" else [call.instance])
        return out

    def clear(self) -> None:
        """Forget every call recorded so far."""
        with self._lock:
            self.calls.clear()

    def __iter__(self) -> Iterator[HandlerCallRecord]:
        return iter(self.of())

    def __len__(self) -> int:
        return len(self.calls)


__all__ = ["CallRecorder", "HandlerCallRecord", "HookCall", "HookRecorder", "RecordingHandler", "hook_specs"]
