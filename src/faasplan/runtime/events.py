"""What workers tell the client and the dashboard while a run goes on.

* :class:`Outbox` — sealed events to the client (progress, trace rows, failures), pushed in
  the background in arrival order to the run's ``events`` list;
* :class:`LogStream` — the decision log (:mod:`faasplan.worker.log`) published as it
  happens to the run's ``log`` stream, as JSON, for live views. It is never unpickled
  and never decides anything: the client builds the trace from the sealed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis

from faasplan.runtime.keys import RunKeys
from faasplan.runtime.redisio import Scripts
from faasplan.runtime.security import Signer
from faasplan.worker.log import Event

LOG_MAXLEN = 1_000_000
"""Entries a run's log stream keeps at most (approximately; the oldest go first)."""
LOG_BATCH = 256
"""Events per log-stream entry at most."""
FLUSH_DELAY_S = 0.02
"""How long a log event waits for others to be pushed with it (s)."""


class Outbox:
    """Sealed events to the client, pushed in the background in arrival order."""

    def __init__(self, client: aioredis.Redis, keys: RunKeys, signer: Signer, context: str,
                 *, epoch: str = "", ttl_ms: int = 0, scripts: Scripts | None = None) -> None:
        # ``epoch``: push only while the run instance of this epoch owns the run id.
        # ``scripts``: registered on ``client`` already (a run's), else registered here.
        self._epoch = epoch
        self._ttl = str(ttl_ms)
        self._client = client
        self._keys = keys
        self._push = (scripts if scripts is not None else Scripts(client)).push
        self._signer = signer
        self._context = context
        self._items: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def put(self, event: tuple[Any, ...], *, lazy: bool = False) -> None:
        """Queue ``event``; it is pushed without blocking the caller.

        ``lazy`` (progress the client only displays): pushed with the next event that is
        not lazy, or by :meth:`take`/:meth:`close`, saving a round trip per event.
        """
        self._items.append(self._signer.dumps(self._context, event))
        if lazy:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._items:
            batch, self._items = self._items, []
            await self._push(keys=[self._keys.events, self._keys.manifest,
                                   self._keys.inv_attempts],
                             args=[self._epoch, self._ttl, *batch])

    async def close(self) -> None:
        """Wait until every queued event is pushed."""
        while self._task is not None and not self._task.done():
            await self._task
        if self._items:
            await self._flush()

    async def take(self) -> list[bytes]:
        """Wait for the push under way, then hand over the sealed events not pushed yet
        (for the caller to push with its own last write, in order, in one step)."""
        while self._task is not None and not self._task.done():
            await self._task
        items, self._items = self._items, []
        return items


def event_json(ev: Event) -> str:
    """One log entry as the dashboard reads it (fields ``w k t key b s e x``)."""
    return json.dumps({"w": ev.worker, "k": ev.kind, "t": ev.task, "key": ev.key,
                       "b": ev.nbytes, "s": ev.start, "e": ev.end, "x": ev.info},
                      separators=(",", ":"))


def event_from_json(text: str | bytes) -> Event:
    """The :class:`~faasplan.worker.log.Event` of one event (an :func:`event_json`)."""
    return _event_of(json.loads(text))


def events_from_json(text: str | bytes) -> list[Event]:
    """The events of one log-stream entry: a JSON array of :func:`event_json` objects (as
    :class:`LogStream` writes them), or one such object.

    Raises ``ValueError`` for text that is not JSON, and ``KeyError``/``TypeError`` for
    JSON that is not events.
    """
    data = json.loads(text)
    if isinstance(data, list):
        return [_event_of(d) for d in data]
    return [_event_of(data)]


def _event_of(d: Any) -> Event:
    return Event(str(d["w"]), str(d["k"]), d.get("t"), d.get("key"), int(d.get("b", 0)),
                 float(d.get("s", 0.0)), float(d.get("e", 0.0)), str(d.get("x", "")))


class LogStream:
    """Decision-log events to the run's ``log`` stream, pushed in the background in batches.

    Events wait up to ``delay_s`` for others to join them; each stream entry then holds a
    JSON array of up to :data:`LOG_BATCH` events (:func:`events_from_json` reads it), so a
    burst of events costs one round trip. :meth:`close` pushes what is queued at once.
    """

    def __init__(self, client: aioredis.Redis, key: str, *, create: bool = False,
                 delay_s: float = FLUSH_DELAY_S) -> None:
        self._client = client
        self._key = key
        # Workers never create the stream: a late event after the client's cleanup must
        # not bring the run's log back (the client creates it before any invocation).
        self._create = create
        self._delay = delay_s
        self._items: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def put(self, event: Event) -> None:
        """Queue ``event``; it is pushed without blocking the caller, within ``delay_s``."""
        self._items.append(event_json(event))
        if self._timer is None and (self._task is None or self._task.done()):
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        batch, self._items = self._items, []
        if batch:
            async with self._client.pipeline(transaction=False) as pipe:
                self.add_to(pipe, _entries(batch))
                with contextlib.suppress(Exception):  # a live view is best effort
                    await pipe.execute()
        # Events put during the round trip wait their own delay for others to join them,
        # so pushes are at least ``delay_s`` apart however slow the round trip is.
        if self._items and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)

    async def take(self) -> list[str]:
        """Wait for the push under way, then hand over the queued events not pushed yet,
        as stream entries (for the caller to add with its own last write, in one round
        trip: see :meth:`add_to`)."""
        while self._task is not None and not self._task.done():
            await self._task
        if self._timer is not None:  # armed before the call, or by the push just awaited
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        return _entries(items)

    def add_to(self, pipe: Any, entries: list[str]) -> None:
        """Queue the ``XADD`` of ``entries`` (from :meth:`take`) on pipeline ``pipe``."""
        for entry in entries:
            pipe.xadd(self._key, {"e": entry}, maxlen=LOG_MAXLEN, approximate=True,
                      nomkstream=not self._create)

    async def close(self) -> None:
        """Push every queued event now and wait until they are in (the stream can be
        used again afterwards)."""
        entries = await self.take()
        if entries:
            async with self._client.pipeline(transaction=False) as pipe:
                self.add_to(pipe, entries)
                with contextlib.suppress(Exception):  # a live view is best effort
                    await pipe.execute()


def _entries(items: list[str]) -> list[str]:
    """Stream entries of queued events: JSON arrays of up to :data:`LOG_BATCH` of them."""
    return ["[" + ",".join(items[i:i + LOG_BATCH]) + "]" for i in range(0, len(items), LOG_BATCH)]
