"""Reflex: the handler registry — an explicit, per-instance list of handlers.

There is no class-level state and nothing registers itself on import:
``builtin_registry()`` names the built-in handlers one by one, and each engine
owns its own ``HandlerRegistry``. Registration validates a handler completely
(id, patterns, ``dedup_window``, an async ``handle``) so a bad handler fails at
start-up, not on the first event. May import: ``contracts`` (via
``reflex.protocol``), ``errors``, ``thalamus.subjects``.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable

from netcortex.errors import DuplicateHandlerError, InvalidSubject, RegistryError
from netcortex.reflex.handlers import (
    BgpDropHandler,
    BgpEstablishedHandler,
    ConfigChangeHandler,
    DeviceDownHandler,
    DeviceRebootHandler,
    DeviceUpHandler,
    LinkDownHandler,
    LinkUpHandler,
    SecurityWebhookHandler,
)
from netcortex.reflex.protocol import ReflexHandler
from netcortex.thalamus.subjects import validate_pattern

__all__ = ["HandlerRegistry", "builtin_handlers", "builtin_registry"]

_HANDLER_ID = re.compile(r"[a-z0-9_-]+")


def builtin_handlers() -> tuple[ReflexHandler, ...]:
    """Fresh instances of every built-in handler, in registration order."""
    return (
        LinkDownHandler(),
        LinkUpHandler(),
        BgpDropHandler(),
        BgpEstablishedHandler(),
        DeviceRebootHandler(),
        SecurityWebhookHandler(),
        DeviceDownHandler(),
        DeviceUpHandler(),
        ConfigChangeHandler(),
    )


class HandlerRegistry:
    """The handlers one engine runs, keyed by id, in registration order.

    Not thread-safe (used from the event loop, and only at start-up).
    """

    __slots__ = ("_handlers",)

    def __init__(self, handlers: Iterable[ReflexHandler] = ()) -> None:
        """Create a registry holding ``handlers`` (each registered as by ``register_handler``)."""
        self._handlers: dict[str, ReflexHandler] = {}
        for handler in handlers:
            self.register_handler(handler)

    def register_handler(self, handler: ReflexHandler) -> None:
        """Add ``handler``; registering the very same instance again is a no-op.

        Raises:
            TypeError: ``handler`` is not a ``ReflexHandler`` instance (a class, or an
                object without ``id``, ``patterns``, ``dedup_window`` and an
                ``async def handle``).
            RegistryError: the id is not a plain token (``[a-z0-9_-]+``), a pattern
                is invalid, there are no patterns, or ``dedup_window`` is negative.
            DuplicateHandlerError: a *different* handler already has this id.
        """
        _check_handler(handler)
        existing = self._handlers.get(handler.id)
        if existing is handler:
            return
        if existing is not None:
            raise DuplicateHandlerError(
                f"handler id {handler.id!r} is already registered by "
                f"{type(existing).__qualname__}; cannot also register {type(handler).__qualname__}"
            )
        self._handlers[handler.id] = handler

    def get_handler(self, handler_id: str) -> ReflexHandler | None:
        """The handler registered under ``handler_id``, or ``None`` when there is none.

        Never raises (like ``OutcomeStore.get``): an unknown id is an ordinary answer.
        """
        return self._handlers.get(handler_id)

    def all_handlers(self) -> tuple[ReflexHandler, ...]:
        """Every registered handler, in registration order."""
        return tuple(self._handlers.values())

    def clear_registry(self) -> None:
        """Forget every handler."""
        self._handlers.clear()

    def __len__(self) -> int:
        """Number of registered handlers."""
        return len(self._handlers)

    def __repr__(self) -> str:
        return f"HandlerRegistry({list(self._handlers)!r})"


def _check_handler(handler: object) -> None:
    if isinstance(handler, type):
        raise TypeError(
            f"register_handler expects a handler instance, got the class "
            f"{handler.__qualname__}; write {handler.__qualname__}()"
        )
    if not isinstance(handler, ReflexHandler):
        missing = [
            name
            for name in ("id", "patterns", "dedup_window", "handle")
            if not hasattr(handler, name)
        ]
        raise TypeError(
            f"{type(handler).__qualname__} is not a ReflexHandler: missing {', '.join(missing)}"
        )
    if not inspect.iscoroutinefunction(handler.handle):
        raise TypeError(f"{type(handler).__qualname__}.handle must be an 'async def' method")
    hid = handler.id
    if not isinstance(hid, str) or not _HANDLER_ID.fullmatch(hid):
        raise RegistryError(
            f"handler id {hid!r} of {type(handler).__qualname__} must be a plain token "
            "matching [a-z0-9_-]+"
        )
    patterns = handler.patterns
    if isinstance(patterns, str) or not isinstance(patterns, tuple | list) or not patterns:
        raise RegistryError(
            f"handler {hid!r}: patterns must be a non-empty tuple of subject patterns, "
            f"got {patterns!r}"
        )
    for pattern in patterns:
        try:
            validate_pattern(pattern)
        except (InvalidSubject, TypeError) as exc:
            raise RegistryError(f"handler {hid!r}: invalid pattern {pattern!r}: {exc}") from exc
    window = handler.dedup_window
    if (
        isinstance(window, bool)
        or not isinstance(window, int | float)
        or not math.isfinite(window)
        or window < 0
    ):
        raise RegistryError(
            f"handler {hid!r}: dedup_window must be a finite number of seconds >= 0, got {window!r}"
        )


def builtin_registry(disabled: Iterable[str] = ()) -> HandlerRegistry:
    """A new registry with every built-in handler except the ids in ``disabled``.

    Args:
        disabled: ids to leave out (``reflex.disabled`` in the config).

    Raises:
        RegistryError: an id in ``disabled`` names no built-in handler (the message
            lists the known ids, so a typo in the config is caught at start-up).
    """
    if isinstance(disabled, str):  # one id given bare: not a set of characters
        disabled = (disabled,)
    handlers = builtin_handlers()
    known = [h.id for h in handlers]
    skip = set(disabled)
    unknown = sorted(skip.difference(known))
    if unknown:
        raise RegistryError(
            f"unknown handler id(s) in disabled: {', '.join(map(repr, unknown))}; "
            f"built-in handlers are {', '.join(known)}"
        )
    return HandlerRegistry(h for h in handlers if h.id not in skip)
