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


class Outbox:
    """Sealed events to the client, pushed in the background in arrival order."""

    def __init__(self, client: aioredis.Redis, keys: RunKeys, signer: Signer, context: str,
                 *, epoch: str = "", ttl_ms: int = 0) -> None:
        # ``epoch``: push only while the run instance of this epoch owns the run id.
        self._epoch = epoch
        self._ttl = str(ttl_ms)
        self._client = client
        self._keys = keys
        self._push = Scripts(client).push
        self._signer = signer
        self._context = context
        self._items: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def put(self, event: tuple[Any, ...]) -> None:
        """Queue ``event``; it is pushed without blocking the caller."""
        self._items.append(self._signer.dumps(self._context, event))
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


def event_json(ev: Event) -> str:
    """One log entry as the dashboard reads it (fields ``w k t key b s e x``)."""
    return json.dumps({"w": ev.worker, "k": ev.kind, "t": ev.task, "key": ev.key,
                       "b": ev.nbytes, "s": ev.start, "e": ev.end, "x": ev.info},
                      separators=(",", ":"))


def event_from_json(text: str | bytes) -> Event:
    """The :class:`~faasplan.worker.log.Event` of one log entry."""
    d = json.loads(text)
    return Event(str(d["w"]), str(d["k"]), d.get("t"), d.get("key"), int(d.get("b", 0)),
                 float(d.get("s", 0.0)), float(d.get("e", 0.0)), str(d.get("x", "")))


class LogStream:
    """Decision-log events to the run's ``log`` stream, pushed in the background in batches."""

    def __init__(self, client: aioredis.Redis, key: str, *, create: bool = False) -> None:
        self._client = client
        self._key = key
        # Workers never create the stream: a late event after the client's cleanup must
        # not bring the run's log back (the client creates it before any invocation).
        self._create = create
        self._items: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        """Queue ``event``; it is pushed without blocking the caller."""
        self._items.append(event_json(event))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._items:
            batch, self._items = self._items, []
            async with self._client.pipeline(transaction=False) as pipe:
                for item in batch:
                    pipe.xadd(self._key, {"e": item}, maxlen=LOG_MAXLEN, approximate=True,
                              nomkstream=not self._create)
                with contextlib.suppress(Exception):  # a live view is best effort
                    await pipe.execute()

    async def close(self) -> None:
        """Wait until every queued event is pushed."""
        while self._task is not None and not self._task.done():
            await self._task
        if self._items:
            await self._flush()
