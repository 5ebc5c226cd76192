"""The runtime driver: performs the worker logic's effects on Redis for one invocation.

:class:`Driver` steps the :func:`~faasplan.worker.execute_branch` generator and turns each
effect into Redis commands (``redis.asyncio``); it makes no decision of its own. What each
effect means is defined by :mod:`faasplan.worker.inmemory`; here:

* ``Fetch`` GETs a sealed payload. With ``wait`` it first registers on the run's pub/sub
  pattern, then checks the key, then sleeps until the producer's announcement (with a
  periodic re-check, so a lost message costs at most one poll interval). With ``stream``
  it reads the Redis Stream the producer appends chunks to while it uploads.
* ``Store`` SETs the payload and announces it (one round trip); with ``stream`` it first
  XADDs the chunks.
* ``Track`` is one Lua script (SADD + SCARD); ``Notify``/``WaitFor`` use a flag key plus
  pub/sub; ``Invoke`` pushes a sealed queue entry; ``Execute`` runs the task function in a
  thread with arguments rebuilt by :func:`~faasplan.workflow.map_leaves`; ``Spawn``/``Join``
  are asyncio tasks, ``Parallel`` is a gather.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np
import redis.asyncio as aioredis

from faasplan.runtime.errors import RunStateLostError
from faasplan.runtime.keys import RunKeys, pool_queue
from faasplan.runtime.manifest import (
    QueuedInvocation,
    RunManifest,
    embedded_entry,
    invocation_id,
    now_ms,
    reference_entry,
    seal_invocation,
)
from faasplan.runtime.redisio import Scripts, get_bytes, xread_entries
from faasplan.runtime.security import Signer
from faasplan.worker import (
    DAG_KEY,
    Execute,
    Fetch,
    Invocation,
    Invoke,
    Join,
    Notify,
    Parallel,
    Payload,
    RunSpec,
    Sleep,
    Spawn,
    Store,
    Track,
    WaitFor,
    execute_branch,
    output_key,
    sink_channel,
)
from faasplan.workflow import SizedBlob, TaskNode, Workflow, map_leaves
from faasplan.workflow.codec import ExternalRef, LiteralRef, decode, encode, load_literal
from faasplan.workflow.local import payload_nbytes

ROW_FIELDS = ("task", "function", "worker", "memory_mb", "start", "exec_start", "exec_end",
              "end", "input_bytes", "output_bytes", "exec_ms", "downloads", "uploads",
              "startup", "startup_ms")
"""What a worker reports per executed task (absolute wall-clock ms; transfers as
``(nbytes, ms, streamed)``)."""

POLL_S = 0.5
"""How often a blocked wait re-checks its key and whether the run was aborted."""

EXTERNAL_FUNCTION = "faasplan.external"


class RunAborted(Exception):
    """The run was aborted or its state is gone: stop this invocation quietly."""


class TaskFailure(Exception):
    """A task function raised (or its output could not be pickled) inside this worker."""

    def __init__(self, task: str, function: str, exc_type: str, message: str, tb: str) -> None:
        super().__init__(f"task {task!r} raised {exc_type}: {message}")
        self.task = task
        self.function = function
        self.exc_type = exc_type
        self.message = message
        self.tb = tb


# -- per run, per worker process -------------------------------------------------------------
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
        self._dag: tuple[bytes, Workflow] | None = None

    async def check_alive(self) -> None:
        """Raise :class:`RunAborted` if the run was aborted or Redis lost its state."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.abort)
            pipe.exists(self.keys.manifest)
            aborted, present = await pipe.execute()
        if aborted or not present:
            raise RunAborted(self.manifest.run_id)

    def decode_dag(self, body: memoryview) -> Workflow:
        """Decode the stored DAG, reusing the last decoding when the bytes are the same."""
        data = bytes(body)
        if self._dag is None or self._dag[0] != data:
            self._dag = (data, decode(data))
        return self._dag[1]

    async def close(self) -> None:
        """Release the run's pub/sub connection."""
        await self.waiters.close()


# -- per invocation -------------------------------------------------------------------------
@dataclass
class TaskRecord:
    """Timings and transfers of one task, sent to the client as a trace row."""

    task: str
    start: float
    exec_start: float = 0.0
    exec_end: float = 0.0
    end: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    exec_ms: float = 0.0
    downloads: list[tuple[int, float, bool]] = field(default_factory=list)
    uploads: list[tuple[int, float, bool]] = field(default_factory=list)
    startup: str = "none"
    startup_ms: float = 0.0


class Outbox:
    """Sealed events to the client, pushed in the background in arrival order."""

    def __init__(self, client: aioredis.Redis, keys: RunKeys, signer: Signer, context: str
                 ) -> None:
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
            await self._push(keys=[self._keys.events, self._keys.manifest], args=batch)

    async def close(self) -> None:
        """Wait until every queued event is pushed."""
        while self._task is not None and not self._task.done():
            await self._task
        if self._items:
            await self._flush()


class Driver:
    """Runs one invocation's branch, performing its effects on Redis."""

    def __init__(self, run: RunState, queued: QueuedInvocation, *, attempt: int, label: str,
                 startup: tuple[str, float], started_at: float, executor: Executor, pool: str,
                 outbox: Outbox, on_block: Callable[[bool], None] | None = None) -> None:
        self.run = run
        self.client = run.client
        self.keys = run.keys
        self.queued = queued
        self.inv_id = queued.inv_id
        self.attempt = attempt
        self.label = label
        self.executor = executor
        self.pool = pool
        self.outbox = outbox
        self.records: dict[str, TaskRecord] = {}
        self.workflows: list[Workflow] = []
        if queued.blob is not None:
            self.workflows.append(decode(queued.blob))
        self._startup = startup
        self._started_at = started_at
        self._first_task = True
        self._pending_downloads: list[tuple[int, float, bool]] = []
        self._pickled: dict[str, bytes] = {}
        self._spawned: list[asyncio.Task[Any]] = []
        self._on_block = on_block
        self._block_depth = 0
        self._handlers: Mapping[type, Callable[[Any, bool], Awaitable[Any]]] = {
            Fetch: self._fetch, Store: self._store, Track: self._track, Notify: self._notify,
            WaitFor: self._wait_for, Invoke: self._invoke, Execute: self._execute,
            Spawn: self._spawn, Join: self._join, Parallel: self._parallel, Sleep: self._sleep,
        }

    async def run_branch(self) -> None:
        """Drive ``execute_branch`` for this invocation to its end."""
        gen = execute_branch(self.run.spec, self.queued.invocation)
        try:
            await self._drive(gen, main=True)
        finally:
            for task in self._spawned:
                task.cancel()

    def rows(self) -> list[tuple[Any, ...]]:
        """Trace rows (fields :data:`ROW_FIELDS`) of the tasks this invocation executed."""
        out = []
        memory = self.queued.invocation.memory_mb
        for rec in self.records.values():
            if not rec.exec_end:
                continue
            out.append((rec.task, self.run.spec.tasks[rec.task].function, self.label, memory,
                        rec.start or rec.exec_start, rec.exec_start, rec.exec_end,
                        max(rec.end, rec.exec_end), rec.input_bytes, rec.output_bytes,
                        rec.exec_ms, tuple(rec.downloads), tuple(rec.uploads), rec.startup,
                        rec.startup_ms))
        return out

    # -- stepping ------------------------------------------------------------------------
    async def _drive(self, gen: Any, main: bool) -> Any:
        value: Any = None
        while True:
            try:
                effect = gen.send(value)
            except StopIteration as stop:
                return stop.value
            value = await self._perform(effect, main)

    async def _perform(self, effect: Any, main: bool) -> Any:
        try:
            handler = self._handlers[type(effect)]
        except KeyError:
            raise TypeError(f"invocation {self.inv_id!r}: unknown effect {effect!r}") from None
        return await handler(effect, main)

    @contextlib.asynccontextmanager
    async def _blocked(self, main: bool) -> AsyncIterator[None]:
        # Only the main branch blocking means the worker idles (the emulator then lets
        # another process run); a background pre-load waiting does not.
        if not main or self._on_block is None:
            yield
            return
        self._block_depth += 1
        if self._block_depth == 1:
            self._on_block(True)
        try:
            yield
        finally:
            self._block_depth -= 1
            if self._block_depth == 0:
                self._on_block(False)

    def _record(self, task: str | None, main: bool) -> TaskRecord | None:
        if task is None:
            return None
        rec = self.records.get(task)
        if rec is None:
            rec = self.records[task] = TaskRecord(task, 0.0)
        if main and not rec.start:
            # Work on the task's path; a background pre-load does not start the task.
            rec.start = now_ms()
        return rec

    # -- storage ---------------------------------------------------------------------------
    async def _fetch(self, f: Fetch, main: bool) -> Payload:
        if f.key == DAG_KEY:
            return await self._fetch_dag(main)
        rec = self._record(f.task, main)
        streamed = False
        raw: bytes | None
        # A download's time starts when the data is there, not while waiting for it.
        if f.stream:
            raw, ready, streamed = await self._read_streamed(f.key, main)
        elif f.wait:
            raw, ready = await self._wait_key(f.key, main)
        else:
            ready = time.perf_counter()
            raw = await get_bytes(self.client, self.keys.data(f.key))
        if raw is None:
            await self.run.check_alive()
            raise RunStateLostError(
                f"key {f.key!r} needed by task {f.task!r} is missing from Redis although "
                "its producer stored it (evicted by maxmemory, or Redis restarted)",
                run_id=self.run.manifest.run_id)
        ms = (time.perf_counter() - ready) * 1000.0
        payload = self._decode_value(f.key, raw)
        transfer = (len(raw), ms, streamed)
        if rec is not None:
            rec.downloads.append(transfer)
        return payload

    async def _fetch_dag(self, main: bool) -> Payload:
        t0 = time.perf_counter()
        raw = await get_bytes(self.client, self.keys.data(DAG_KEY))
        if raw is None:
            await self.run.check_alive()
            raise RunStateLostError("the stored DAG is missing from Redis",
                                    run_id=self.run.manifest.run_id)
        body = self.run.signer.open(self.keys.context(DAG_KEY), raw)
        wf = self.run.decode_dag(body)
        if wf not in self.workflows:
            self.workflows.append(wf)
        self._pending_downloads.append((len(raw), (time.perf_counter() - t0) * 1000.0, False))
        return Payload(len(raw), wf)

    def _decode_value(self, key: str, raw: bytes) -> Payload:
        body = self.run.signer.open(self.keys.context(key), raw)
        size = self.run.manifest.literal_sizes.get(key)
        if size is not None:
            return Payload(size, load_literal(LiteralRef(key, size), bytes(body)))
        value = pickle.loads(body)
        return Payload(value_nbytes(value, len(body)), value)

    async def _wait_key(self, key: str, main: bool) -> tuple[bytes | None, float]:
        """The stored value, and when the GET that found it was issued."""
        dkey = self.keys.data(key)
        issued = time.perf_counter()
        raw = await get_bytes(self.client, dkey)
        if raw is not None:
            return raw, issued

        async def check() -> bytes | None:
            nonlocal issued
            issued = time.perf_counter()
            return await get_bytes(self.client, dkey)

        async with self._blocked(main):
            result: bytes = await self.run.waiters.wait(self.keys.pubsub(key), check)
        return result, issued

    async def _read_streamed(self, key: str, main: bool) -> tuple[bytes | None, float, bool]:
        """The value (read chunk by chunk while the producer uploads), when it began to
        arrive, and whether it was streamed."""
        dkey, skey = self.keys.data(key), self.keys.stream(key)
        issued = time.perf_counter()
        raw = await get_bytes(self.client, dkey)
        if raw is not None:
            return raw, issued, False
        chunks: list[bytes] = []
        attempt: bytes | None = None
        last: bytes | str = "0-0"
        async with self._blocked(main):
            while True:
                entries = await xread_entries(self.client, skey, last, int(POLL_S * 1000))
                if not entries:
                    issued = time.perf_counter()
                    raw = await get_bytes(self.client, dkey)
                    if raw is not None:
                        return raw, issued, False
                    await self.run.check_alive()
                    continue
                for entry_id, fields in entries:
                    last = entry_id
                    tag = fields[b"a"]
                    if b"end" in fields:
                        if tag == attempt and len(chunks) == int(fields[b"end"]):
                            return b"".join(chunks), issued, True
                        continue
                    seq = int(fields[b"i"])
                    if seq == 0:
                        # A retried producer streams again from the start.
                        chunks, attempt, issued = [], tag, time.perf_counter()
                    if tag == attempt and seq == len(chunks):
                        chunks.append(fields[b"d"])

    async def _store(self, s: Store, main: bool) -> None:
        rec = self._record(s.task, main)
        data = self._pickled.pop(s.key, None)
        if data is None:
            data = cloudpickle.dumps(s.payload.value, protocol=5)
        sealed = self.run.signer.seal(self.keys.context(s.key), data)
        t0 = time.perf_counter()
        if s.stream:
            await self._stream_out(s.key, sealed)
        stored = await self.run.scripts.store(
            keys=[self.keys.data(s.key), self.keys.manifest, self.keys.abort],
            args=[sealed, self.keys.pubsub(s.key)])
        if not stored:
            raise RunAborted(self.run.manifest.run_id)
        if rec is not None:
            rec.uploads.append((len(sealed), (time.perf_counter() - t0) * 1000.0, s.stream))
            rec.end = now_ms()

    async def _stream_out(self, key: str, sealed: bytes) -> None:
        skey = self.keys.stream(key)
        tag = f"{self.inv_id}/{self.attempt}"
        step = max(1, self.run.manifest.stream_chunk_bytes)
        count = 0
        for offset in range(0, len(sealed), step):
            await self.client.xadd(skey, {"a": tag, "i": count, "d": sealed[offset:offset + step]})
            count += 1
        await self.client.xadd(skey, {"a": tag, "end": count})

    # -- coordination -------------------------------------------------------------------
    async def _track(self, t: Track, main: bool) -> bool:
        done = int(await self.run.scripts.track(
            keys=[self.keys.deps(t.task), self.keys.owners, self.keys.manifest],
            args=[t.upstream, t.expected, self.inv_id, t.task]))
        if done < 0:
            raise RunAborted(self.run.manifest.run_id)
        return done == 1

    async def _notify(self, n: Notify, main: bool) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.flag(n.channel), b"1")
            pipe.publish(self.keys.pubsub("chan:" + n.channel), b"1")
            await pipe.execute()
        sink = self.run.sink_channels.get(n.channel)
        if sink is not None:
            self.outbox.put(("sink", sink))

    async def _wait_for(self, w: WaitFor, main: bool) -> None:
        flag = self.keys.flag(w.channel)
        if await self.client.exists(flag):
            return
        async with self._blocked(main):
            await self.run.waiters.wait(self.keys.pubsub("chan:" + w.channel),
                                        lambda: get_bytes(self.client, flag))

    async def _invoke(self, i: Invoke, main: bool) -> None:
        inv = i.invocation
        if inv.prewarm:
            inv_id = invocation_id(inv, uuid.uuid4().hex[:12])
            blob = None
        else:
            inv_id = invocation_id(inv)
            blob = self.inline_blob(inv) if inv.inline_dag else None
        queued = QueuedInvocation(self.run.manifest.run_id, inv_id, inv, blob, now_ms(),
                                  self.run.manifest.epoch)
        await enqueue(self.client, self.keys, self.pool, queued,
                      seal_invocation(self.run.signer, queued))

    def inline_blob(self, inv: Invocation) -> bytes | None:
        """The subDAG an invocation carries, from the workflow(s) this worker holds."""
        return inline_blob(self.workflows, self.run.spec, inv)

    # -- execution ----------------------------------------------------------------------
    async def _execute(self, e: Execute, main: bool) -> Payload:
        node = await self._node(e.task)
        rec = self._record(e.task, main)
        assert rec is not None  # Execute always names its task
        if self._first_task:
            self._first_task = False
            rec.startup, rec.startup_ms = self._startup
            rec.start = self._started_at
        rec.downloads.extend(self._pending_downloads)
        self._pending_downloads.clear()
        rec.input_bytes = sum(p.nbytes for p in e.inputs.values())
        rec.exec_start = now_ms()
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self.executor, call_task, e.task, node, e.inputs)
        rec.exec_end = now_ms()
        if isinstance(outcome, TaskFailure):
            raise outcome
        value, data, exec_ms = outcome
        payload = Payload(value_nbytes(value, len(data)), value)
        self._pickled[output_key(e.task)] = data
        rec.output_bytes, rec.exec_ms = payload.nbytes, exec_ms
        self.outbox.put(("done", e.task, self.label))
        return payload

    async def _node(self, task: str) -> TaskNode:
        node = self._find(task)
        if node is None:
            # Defensive: the worker logic sends a subDAG inline only when it holds every
            # task the invoked worker runs (RunSpec.self_contained).
            await self._fetch_dag(main=True)
            node = self._find(task)
        if node is None:
            raise KeyError(f"task {task!r} is neither in invocation {self.inv_id!r}'s subDAG "
                           "nor in the stored DAG")
        return node

    def _find(self, task: str) -> TaskNode | None:
        for wf in self.workflows:
            node = wf.tasks.get(task)
            if node is not None and node.func.name != EXTERNAL_FUNCTION:
                return node
        return None

    async def _spawn(self, s: Spawn, main: bool) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._drive(s.branch, False))
        self._spawned.append(task)
        return task

    async def _join(self, j: Join, main: bool) -> list[Any]:
        handles: tuple[asyncio.Task[Any], ...] = j.handles
        if all(h.done() for h in handles):
            return [h.result() for h in handles]
        async with self._blocked(main):
            return list(await asyncio.gather(*handles))

    async def _parallel(self, p: Parallel, main: bool) -> list[Any]:
        tasks = [asyncio.ensure_future(self._perform(e, main)) for e in p.effects]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:  # no orphan keeps waiting after one effect failed
                t.cancel()
            raise

    async def _sleep(self, s: Sleep, main: bool) -> None:
        await asyncio.sleep(s.ms / 1000.0)


# -- helpers shared with the client -----------------------------------------------------------
async def enqueue(client: aioredis.Redis, keys: RunKeys, pool: str, queued: QueuedInvocation,
                  sealed: bytes) -> None:
    """Register (unless a pre-warm) and push one invocation, atomically."""
    await enqueue_many(client, keys, pool, [(queued, sealed)], transaction=True)


async def enqueue_many(client: aioredis.Redis, keys: RunKeys, pool: str,
                       batch: list[tuple[QueuedInvocation, bytes]], *,
                       transaction: bool = False) -> None:
    """Register and push invocations in one round trip (registration before the push).

    A registered invocation is stored once, in the run's ``items`` hash; its queue entry
    is a reference. Pre-warms travel embedded.
    """
    async with client.pipeline(transaction=transaction) as pipe:
        for queued, sealed in batch:
            queue = pool_queue(pool, queued.invocation.memory_mb)
            if queued.invocation.prewarm:
                pipe.rpush(queue, embedded_entry(queued.run_id, sealed))
                continue
            # HSETNX: a duplicate push must not reset a running or finished invocation.
            pipe.hsetnx(keys.inv_state, queued.inv_id, b"queued")
            pipe.hset(keys.inv_items, queued.inv_id, sealed)
            pipe.hset(keys.inv_queue, queued.inv_id, queue)
            pipe.rpush(queue, reference_entry(queued.run_id, queued.epoch, queued.inv_id))
        await pipe.execute()


def inline_blob(workflows: list[Workflow], spec: RunSpec, inv: Invocation) -> bytes | None:
    """Encode the subDAG ``inv`` carries: below its root; a planned worker's own tasks too.

    ``None`` when no held workflow contains the root; the worker then fetches the DAG.
    """
    root = inv.roots[0]
    for wf in workflows:
        if root not in wf.tasks:
            continue
        sub = wf.subdag(root)
        if inv.worker is not None:
            own = [t for t in spec.worker_tasks[inv.worker] if t in wf.tasks and t not in sub]
            if own:
                sub = restrict(wf, set(sub.topological_order) | set(own))
        return encode(sub).blob
    return None


def restrict(wf: Workflow, ids: set[str]) -> Workflow:
    """The workflow of tasks ``ids`` of ``wf``; inputs from outside become placeholders.

    Placeholders are tasks of function ``faasplan.external`` named by the producer's id;
    they are never executed: the driver fetches those outputs.
    """
    new: dict[str, TaskNode] = {}
    external: dict[str, TaskNode] = {}

    def convert(node: TaskNode) -> TaskNode:
        uid = node.task_id if isinstance(node, ExternalRef) else wf.id_of(node)
        assert uid is not None
        if uid in new:
            return new[uid]
        if uid not in external:
            external[uid] = ExternalRef(uid)
        return external[uid]

    for tid in wf.topological_order:
        if tid in ids:
            node = wf.tasks[tid]
            args, kwargs = map_leaves((node.args, node.kwargs), convert, TaskNode)
            new[tid] = TaskNode(node.func, args, kwargs, tid, node.profile)
    sinks = [new[t] for t in new if not any(d in new for d in wf.downstream(t))]
    return Workflow(sinks, name=wf.name, requirements=wf.requirements, detect=False)


def call_task(task: str, node: TaskNode, inputs: Mapping[str, Payload]
              ) -> tuple[Any, bytes, float] | TaskFailure:
    """Run ``node`` on its fetched inputs (in an executor thread); pickle its output.

    Returns ``(value, pickled value, exec ms)``, or the :class:`TaskFailure` to raise.
    """
    def resolve(leaf: Any) -> Any:
        if isinstance(leaf, LiteralRef):
            return inputs[leaf.id].value
        return inputs[output_key(leaf.task_id)].value

    args, kwargs = map_leaves((node.args, node.kwargs), resolve, (TaskNode, LiteralRef))
    start = time.perf_counter()
    try:
        value = node.func.fn(*args, **kwargs)
        exec_ms = (time.perf_counter() - start) * 1000.0
        data = cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        return TaskFailure(task, node.func.name, type(exc).__name__, str(exc),
                           traceback.format_exc())
    return value, data, exec_ms


def value_nbytes(value: Any, pickled_nbytes: int) -> int:
    """Size of an output as :func:`~faasplan.workflow.local.payload_nbytes` counts it.

    Pickled sizes are reused, never recomputed.
    """
    if isinstance(value, np.ndarray | np.generic) and value.dtype != object:
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | memoryview | str | SizedBlob):
        return payload_nbytes(value)
    return pickled_nbytes
