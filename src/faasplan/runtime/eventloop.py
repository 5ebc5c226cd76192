"""The event loop of the runtime's processes: uvloop where it is installed, else asyncio's.

The client, the local FaaS emulator's dispatcher and every worker process run their
coroutines through :func:`run` (the sandboxes in a Dask worker, on a loop of
:func:`new_event_loop`). uvloop (libuv under asyncio's API) cuts the loop's own cost
per Redis command and per task handed to the executor thread, which is most of a tiny
task's overhead. ``FAASPLAN_EVENT_LOOP`` chooses: ``auto`` (the default: uvloop if
importable), ``uvloop`` (required) or ``asyncio`` (the standard loop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_ENV = "FAASPLAN_EVENT_LOOP"
"""The environment variable that chooses the event loop."""

_CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopChoiceError(ValueError):
    """``FAASPLAN_EVENT_LOOP`` names a loop that cannot be used (bad input: the CLI exits
    with code 2)."""

    bad_input = True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the event loop to run on (``None``: asyncio's default loop).

    Raises
    ------
    EventLoopChoiceError
        ``FAASPLAN_EVENT_LOOP`` is not one of ``auto``, ``uvloop``, ``asyncio``, or it is
        ``uvloop`` and uvloop is not installed.
    """
    choice = os.environ.get(LOOP_ENV, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise EventLoopChoiceError(f"{LOOP_ENV}={os.environ[LOOP_ENV]!r} is not an event loop "
                                   f"faasplan knows; use one of {', '.join(_CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise EventLoopChoiceError(f"{LOOP_ENV}=uvloop, but uvloop is not installed (pip "
                                       f"install uvloop), or set {LOOP_ENV}=asyncio") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of :func:`loop_factory`, for a thread that runs it itself."""
    factory = loop_factory()
    return asyncio.new_event_loop() if factory is None else factory()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on a new loop of :func:`loop_factory` (as ``asyncio.run``)."""
    try:
        factory = loop_factory()
    except BaseException:
        coro.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
