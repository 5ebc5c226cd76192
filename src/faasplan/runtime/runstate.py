"""What a worker process keeps about one run while it stays warm, and how it waits.

:class:`RunState` holds a run's manifest, spec and signer; :class:`Waiters` multiplexes
every blocked wait of the process on one pub/sub connection per run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from faasplan.runtime.keys import RunKeys
from faasplan.runtime.manifest import RunManifest, payload_context
from faasplan.runtime.redisio import Scripts
from faasplan.runtime.security import Signer
from faasplan.worker import RunSpec, sink_channel

POLL_S = 0.5
"""How often a blocked wait re-checks its key and whether the run was aborted."""


DEFAULT_MAX_BULK = 512 * 1024 * 1024
"""Redis's default ``proto-max-bulk-len``: the largest value one command may carry."""


class RunAborted(Exception):
    """The run was aborted or its state is gone: stop this invocation quietly."""


class Superseded(RunAborted):
    """This attempt's invocation was claimed again (its worker was taken for dead): stop
    without writing anything more; the newer attempt carries on."""


def check_write(code: int, run_id: str) -> int:
    """``code`` of a fenced script (:mod:`~faasplan.runtime.redisio`), or the stop it means."""
    if code == -1:
        raise RunAborted(run_id)
    if code == -2:
        raise Superseded(run_id)
    return code


class Waiters:
    """One pub/sub connection per run and process, waking the coroutines waiting on channels."""

    def __init__(self, client: aioredis.Redis, pattern: str,
                 alive: Callable[[], Awaitable[None]]) -> None:
        self._client = client
        self._pattern = pattern
        self._alive = alive
        self._waiting: dict[bytes, set[asyncio.Event]] = {}
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        if self._ready is None:
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._listen(self._ready))
        await self._ready.wait()

    async def _listen(self, ready: asyncio.Event) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(self._pattern)
            while True:
                try:
                    msg = await pubsub.get_message(timeout=POLL_S)
                except Exception:
                    # Reconnection is retried by the client; waiters re-check meanwhile.
                    await asyncio.sleep(POLL_S)
                    continue
                if msg is None:
                    continue
                if msg["type"] == "psubscribe":
                    ready.set()
                elif msg["type"] == "pmessage":
                    for ev in self._waiting.get(msg["channel"], ()):
                        ev.set()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def wait(self, channel: str, check: Callable[[], Awaitable[Any]]) -> Any:
        """Return ``await check()`` once it is not ``None``, sleeping until ``channel`` fires."""
        await self._start()
        ev = asyncio.Event()
        name = channel.encode()
        self._waiting.setdefault(name, set()).add(ev)
        try:
            while True:
                ev.clear()
                result = await check()
                if result is not None:
                    return result
                try:
                    await asyncio.wait_for(ev.wait(), POLL_S)
                except TimeoutError:
                    await self._alive()
        finally:
            self._waiting[name].discard(ev)

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class RunState:
    """What a worker process keeps about one run while it stays warm."""

    def __init__(self, client: aioredis.Redis, signer: Signer, manifest: RunManifest,
                 missing: list[str]) -> None:
        self.client = client
        self.signer = signer
        self.manifest = manifest
        self.keys = RunKeys(manifest.run_id)
        self.spec: RunSpec = manifest.to_spec()
        self.scripts = Scripts(client)
        self.missing_requirements = missing
        self.waiters = Waiters(client, self.keys.pubsub_pattern, self.check_alive)
        self.sink_channels = {sink_channel(s): s for s in manifest.sinks}
        self._max_bulk: int | None = None

    @property
    def epoch(self) -> str:
        """The run instance every write of its workers is fenced with."""
        return self.manifest.epoch

    @property
    def ttl_ms(self) -> str:
        """Time to live of the keys the run's workers create, as a script argument."""
        return str(self.manifest.key_ttl_ms)

    def context(self, key: str) -> str:
        """MAC context of the run's stored payload ``key`` (bound to the run instance)."""
        return payload_context(self.manifest.run_id, self.manifest.epoch, key)

    async def max_bulk(self) -> int:
        """The server's ``proto-max-bulk-len`` (the default when ``CONFIG`` is refused)."""
        if self._max_bulk is None:
            self._max_bulk = await server_max_bulk(self.client)
        return self._max_bulk

    async def check_alive(self) -> None:
        """Raise :class:`RunAborted` if the run was aborted or Redis lost its state."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.abort)
            pipe.exists(self.keys.manifest)
            aborted, present = await pipe.execute()
        if aborted or not present:
            raise RunAborted(self.manifest.run_id)

    async def close(self) -> None:
        """Release the run's pub/sub connection."""
        await self.waiters.close()


async def server_max_bulk(client: aioredis.Redis) -> int:
    """The largest value ``client``'s server accepts in one command, in bytes."""
    try:
        reply: Any = await client.config_get("proto-max-bulk-len")
    except ResponseError:  # CONFIG renamed or not allowed for this user
        return DEFAULT_MAX_BULK
    for name, value in dict(reply or {}).items():
        if (name.decode() if isinstance(name, bytes) else name) == "proto-max-bulk-len":
            return int(value)
    return DEFAULT_MAX_BULK
