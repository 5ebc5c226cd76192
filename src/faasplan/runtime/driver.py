"""The runtime driver: performs the worker logic's effects on Redis for one invocation.

:class:`Driver` steps the :func:`~faasplan.worker.execute_branch` generator and turns each
effect into Redis commands (``redis.asyncio``); it makes no decision of its own. What each
effect means is defined by :mod:`faasplan.worker.inmemory`; here:

* ``Fetch`` GETs a sealed payload. A DAG part the worker process already holds for the
  run (:class:`~faasplan.runtime.invoking.HeldParts`, kept while warm) is answered from
  memory with ``Payload(0)``; a new one is opened, checked against its content address
  and kept. With ``wait`` it first registers on the run's pub/sub
  pattern, then checks the key, then sleeps until the producer's announcement (with a
  periodic re-check, so a lost message costs at most one poll interval). With ``stream``
  it reads the Redis Stream the producer appends chunks to while it uploads.
* ``Store`` SETs the payload and announces it (one round trip); with ``stream`` it first
  XADDs the chunks. The track or notification the worker logic asks for right after a
  store goes to Redis in the same round trip, behind it (:meth:`Driver._drive`).
* ``Track`` is one Lua script (SADD + SCARD); ``Notify``/``WaitFor`` use a flag key plus
  pub/sub; ``Invoke`` pushes a sealed queue entry; ``Execute`` runs the task function in a
  thread with arguments rebuilt by :func:`~faasplan.workflow.map_leaves`; ``Spawn``/``Join``
  are asyncio tasks, ``Parallel`` is a gather (of tracks only: one pipelined round trip).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import pickle
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from faasplan.runtime.errors import PayloadAuthError, RunStateLostError
from faasplan.runtime.events import LogStream, Outbox
from faasplan.runtime.execution import TaskFailure, call_task, value_nbytes
from faasplan.runtime.invoking import EXTERNAL_FUNCTION, HeldParts, inline_blob
from faasplan.runtime.keys import pool_queue
from faasplan.runtime.manifest import (
    QueuedInvocation,
    embedded_entry,
    invocation_id,
    now_ms,
    reference_entry,
    seal_invocation,
)
from faasplan.runtime.redisio import (
    STREAMED,
    get_bytes,
    get_stored,
    mget_bytes,
    run_pipelined,
    streamed_marker,
    xread_entries,
)
from faasplan.runtime.runstate import POLL_S, RunState, check_write
from faasplan.worker import (
    Execute,
    Fetch,
    Invoke,
    Join,
    Notify,
    Parallel,
    Payload,
    Sleep,
    Spawn,
    Store,
    Track,
    WaitFor,
    execute_branch,
    is_dag_part,
    output_key,
    rides_behind_store,
)
from faasplan.worker.log import Event, logged
from faasplan.workflow import TaskNode, Workflow
from faasplan.workflow.codec import LiteralRef, decode, load_literal
from faasplan.workflow.errors import WorkflowError

ROW_FIELDS = ("task", "function", "worker", "memory_mb", "start", "exec_start", "exec_end",
              "end", "input_bytes", "output_bytes", "exec_ms", "downloads", "uploads",
              "startup", "startup_ms")
"""What a worker reports per executed task (absolute wall-clock ms; transfers as
``(nbytes, ms, streamed)``)."""


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


@dataclass
class _Write:
    """One fenced script call of an effect, and what its reply means (``done(reply)``).

    ``guarded``: the last key must exist, or the script writes nothing and answers
    :data:`GUARD_REFUSED` (a track or notification sent behind the store of that key).
    """

    script: Any  # a script registered on the run's client (redis-py ``AsyncScript``)
    keys: list[str]
    args: list[Any]
    done: Callable[[Any], Any]
    guarded: bool = False


GUARD_REFUSED = -3
"""What TRACK and NOTIFY answer when the key they were told must exist does not."""


def _refused(reply: Any) -> bool:
    code = reply[0] if isinstance(reply, list | tuple) and reply else reply
    return isinstance(code, int) and code == GUARD_REFUSED


QUICK_MS = 2.0
"""When nothing else of the invocation is under way, a task is waited for this long
without the event loop (a tiny task is done by then), then through it."""


class Driver:
    """Runs one invocation's branch, performing its effects on Redis."""

    def __init__(self, run: RunState, queued: QueuedInvocation, *, attempt: int, label: str,
                 startup: tuple[str, float], started_at: float, executor: Executor, pool: str,
                 outbox: Outbox, on_block: Callable[[bool], None] | None = None,
                 log: LogStream | None = None, parts: HeldParts | None = None) -> None:
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
        self.events: list[Event] = []
        self._log = log
        # The DAG parts this process holds for the run: shared by its invocations while warm.
        self.parts = parts if parts is not None else HeldParts()
        self.workflows: list[Workflow] = []
        if queued.blob is not None:
            self.workflows.append(decode(queued.blob, loaded_code=self.parts.loaded_code))
        self._startup = startup
        self._started_at = started_at
        self._first_task = True
        self._pickled: dict[str, bytes] = {}
        self._pickle_s: dict[str, float] = {}
        self._final: set[str] = set()
        # What every write of this invocation carries: the scripts refuse it once the
        # invocation was claimed again (or the run id was reused).
        self._fence = (self.inv_id, str(attempt), run.epoch)
        self._spawned: list[asyncio.Task[Any]] = []
        # Looking past a store (see _drive): the log's clock then reads the look-ahead's
        # mark (-k for the k-th), and _emit puts in the real times once they are known.
        self._ahead = 0.0
        self._lookahead = 0
        self._held: dict[float, list[Event]] = {}
        self._resumed: dict[float, float] = {}
        self._on_block = on_block
        self._block_depth = 0
        self._handlers: Mapping[type, Callable[[Any, bool], Awaitable[Any]]] = {
            Fetch: self._fetch, Store: self._store, Track: self._track, Notify: self._notify,
            WaitFor: self._wait_for, Invoke: self._invoke, Execute: self._execute,
            Spawn: self._spawn, Join: self._join, Parallel: self._parallel, Sleep: self._sleep,
        }

    async def run_branch(self) -> None:
        """Drive ``execute_branch`` for this invocation to its end."""
        inv = self.queued.invocation
        self._emit(Event(self.label, "start", None, None, inv.memory_mb, self._started_at,
                         now_ms(), self._startup[0]))
        gen = logged(execute_branch(self.run.spec, inv), self.label, self._emit, self._clock)
        try:
            await self._drive(gen, main=True)
        finally:
            for task in self._spawned:
                task.cancel()
        self._emit(Event(self.label, "end", None, None, 0, now_ms(), now_ms()))

    def _clock(self) -> float:
        """The decision log's clock: wall-clock ms, or a look-ahead's mark (see _drive)."""
        return self._ahead or now_ms()

    def _emit(self, event: Event) -> None:
        if event.end < 0:  # a store answered ahead of its acknowledgement: held until then
            self._held.setdefault(event.end, []).append(event)
            return
        if event.start < 0:  # the effect after such a store: it began when resumed
            event = event._replace(start=self._resumed.get(event.start, now_ms()))
        self.events.append(event)
        if self._log is not None:
            self._log.put(event)

    def _acknowledged(self, mark: float, sent: float | None = None) -> None:
        """The store of look-ahead ``mark`` is acknowledged now; the next effect began with
        it (``sent``: when both were sent) or begins now: put both times in the log."""
        end = now_ms()
        self._resumed[mark] = end if sent is None else sent
        for event in self._held.pop(mark, ()):
            self._emit(event._replace(end=end))

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
            if type(effect) is not Store:
                value = await self._perform(effect, main)
                continue
            write = await self._store_write(effect, main)
            if write is None:
                value = None  # nothing left to write (an earlier attempt's output adopted)
                continue
            # A store answers ``None`` once acknowledged. The worker logic's next effect
            # is known without waiting: if it is a track or a notification (what follows
            # a store), both scripts go to Redis in one round trip, the store first. Redis
            # runs them in that order, so whoever sees the second sees the stored value;
            # a stale attempt is fenced off by both, and the second writes nothing unless
            # the stored key exists (a store refused under maxmemory leaves no track
            # behind: _merged_writes). Anything else waits for the store.
            # The decision log times the store up to its acknowledgement and the next
            # effect from when it is really under way (_clock, _emit).
            self._lookahead += 1
            mark = self._ahead = -float(self._lookahead)
            try:
                effect = gen.send(None)
            except BaseException as exc:
                self._ahead = 0.0
                await self._send([write])  # it came first: still made, then the end
                self._acknowledged(mark)
                if isinstance(exc, StopIteration):
                    return exc.value
                raise
            self._ahead = 0.0
            writes = self._merged_writes(effect, write.keys[0])
            if writes is None:
                await self._send([write])
                self._acknowledged(mark)
                value = await self._perform(effect, main)
                continue
            sent = now_ms()
            replies = (await self._send([write, *writes]))[1:]
            self._acknowledged(mark, sent)
            value = replies if type(effect) is Parallel else replies[0]

    def _merged_writes(self, effect: Any, stored: str) -> list[_Write] | None:
        """The writes of a track, a notification or a parallel set of tracks (``None``
        for any other effect), each refused unless the data key ``stored`` exists: a
        store Redis refuses (its value above ``maxmemory``) must not leave a track
        behind it."""
        if not rides_behind_store(effect):
            return None
        if type(effect) is Parallel:
            writes = [self._track_write(e) for e in effect.effects]
        elif type(effect) is Track:
            writes = [self._track_write(effect)]
        else:
            writes = [self._notify_write(effect)]
        for w in writes:
            w.keys.append(stored)
            w.guarded = True
        return writes

    async def _send(self, writes: list[_Write]) -> list[Any]:
        """Run the scripts in order, in one round trip, and what each reply means."""
        if len(writes) == 1:
            w = writes[0]
            return [w.done(await w.script(keys=w.keys, args=w.args))]
        replies = await run_pipelined(self.client, [(w.script, w.keys, w.args) for w in writes])
        out = []
        for w, reply in zip(writes, replies, strict=True):
            # In order: a store's error is raised before the writes behind it count.
            if isinstance(reply, Exception):
                raise reply
            if w.guarded and _refused(reply):
                # Run before the store it follows, which had to be loaded again: now.
                reply = await w.script(keys=w.keys, args=w.args)
            if w.guarded and _refused(reply):
                raise RunStateLostError(
                    f"key {w.keys[-1]!r} is missing from Redis right after it was stored "
                    "(evicted by maxmemory, or Redis restarted)", run_id=self.run.manifest.run_id)
            out.append(w.done(reply))
        return out

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
        if is_dag_part(f.key):
            return await self._fetch_part(f, main)
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
            raw = await self._get(f.key)
        return await self._fetched(f, rec, raw, ready, streamed)

    async def _fetched(self, f: Fetch, rec: TaskRecord | None, raw: bytes | None,
                       ready: float, streamed: bool = False) -> Payload:
        """A read value opened, decoded and recorded (missing: the run state was lost)."""
        if raw is None:
            await self.run.check_alive()
            raise RunStateLostError(
                f"key {f.key!r} needed by task {f.task!r} is missing from Redis although "
                "its producer stored it (evicted by maxmemory, or Redis restarted)",
                run_id=self.run.manifest.run_id)
        # Opening the seal and unpickling belong to the download, as in the simulator.
        payload = self._decode_value(f.key, raw)
        ms = (time.perf_counter() - ready) * 1000.0
        transfer = (len(raw), ms, streamed)
        if rec is not None:
            rec.downloads.append(transfer)
        return payload

    async def _fetch_part(self, f: Fetch, main: bool) -> Payload:
        """One stored DAG part: from what this process holds, or from Redis (then kept)."""
        if f.key in self.parts:
            return Payload(0)  # fetched earlier in the run by this warm process
        rec = self._record(f.task, main)
        t0 = time.perf_counter()
        raw = await get_bytes(self.client, self.keys.data(f.key))
        return await self._part_fetched(f, rec, raw, t0)

    async def _part_fetched(self, f: Fetch, rec: TaskRecord | None, raw: bytes | None,
                            t0: float) -> Payload:
        """A read DAG part opened, kept for the run and recorded."""
        if raw is None:
            await self.run.check_alive()
            raise RunStateLostError(
                f"DAG part {f.key!r} needed by task {f.task!r} is missing from Redis (evicted "
                "by maxmemory, or Redis restarted)", run_id=self.run.manifest.run_id)
        body = bytes(self.run.signer.open(self.run.context(f.key), raw))
        try:
            self.parts.add(f.key, body)
        except WorkflowError as exc:
            raise RunStateLostError(str(exc), run_id=self.run.manifest.run_id) from exc
        if rec is not None:
            rec.downloads.append((len(raw), (time.perf_counter() - t0) * 1000.0, False))
        return Payload(len(body))

    def _plain_fetches(self, effects: tuple[Any, ...]) -> list[int] | None:
        """Which of a parallel set's effects read keys known to exist (fetches without
        ``wait`` or ``stream``, and not a DAG part this process holds), when two or more
        do: they are read with one ``MGET``, as the simulator models them."""
        batch = [i for i, e in enumerate(effects)
                 if type(e) is Fetch and not e.wait and not e.stream]
        if len(batch) < 2:
            return None
        parts = self.parts
        batch = [i for i in batch if not (is_dag_part(effects[i].key) and effects[i].key in parts)]
        return batch if len(batch) > 1 else None

    async def _fetch_many(self, fetches: list[Fetch], main: bool) -> list[Payload]:
        """Plain fetches in one round trip (``MGET``), each opened and recorded as
        :meth:`_fetch` would."""
        recs = [self._record(f.task, main) for f in fetches]
        t0 = time.perf_counter()
        raws = await mget_bytes(self.client, [self.keys.data(f.key) for f in fetches])
        out: list[Payload] = []
        for f, rec, raw in zip(fetches, recs, raws, strict=True):
            if is_dag_part(f.key):
                out.append(await self._part_fetched(f, rec, raw, t0))
                continue
            if raw is not None and raw.startswith(STREAMED):
                raw = await self._get(f.key)  # a streamed output: its chunks, reassembled
            out.append(await self._fetched(f, rec, raw, t0))
        return out

    def _decode_value(self, key: str, raw: bytes) -> Payload:
        body = self.run.signer.open(self.run.context(key), raw)
        size = self.run.manifest.literal_sizes.get(key)
        if size is not None:
            return Payload(size, load_literal(LiteralRef(key, size), bytes(body)))
        value = pickle.loads(body)
        return Payload(value_nbytes(value, len(body)), value)

    async def _wait_key(self, key: str, main: bool) -> tuple[bytes | None, float]:
        """The stored value, and when the GET that found it was issued."""
        issued = time.perf_counter()
        raw = await self._get(key)
        if raw is not None:
            return raw, issued

        async def check() -> bytes | None:
            nonlocal issued
            issued = time.perf_counter()
            return await self._get(key)

        async with self._blocked(main):
            result: bytes = await self.run.waiters.wait(self.keys.pubsub(key), check)
        return result, issued

    async def _read_streamed(self, key: str, main: bool) -> tuple[bytes | None, float, bool]:
        """The value (read chunk by chunk while the producer uploads), when it began to
        arrive, and whether it was streamed."""
        skey = self.keys.stream(key)
        issued = time.perf_counter()
        raw = await self._get(key)
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
                    raw = await self._get(key)
                    if raw is not None:
                        return raw, issued, False
                    await self.run.check_alive()
                    continue
                for entry_id, fields in entries:
                    last = entry_id
                    tag = fields[b"a"]
                    if b"end" in fields:
                        if tag == attempt and len(chunks) == int(fields[b"end"]):
                            return await self._confirm_streamed(key, tag, chunks, issued,
                                                                main)
                        continue
                    seq = int(fields[b"i"])
                    if seq == 0:
                        # A retried producer streams again from the start.
                        chunks, attempt, issued = [], tag, time.perf_counter()
                    if tag == attempt and seq == len(chunks):
                        chunks.append(fields[b"d"])

    async def _confirm_streamed(self, key: str, tag: bytes, chunks: list[bytes],
                                issued: float, main: bool) -> tuple[bytes | None, float, bool]:
        """The streamed value if its producer's attempt is the one whose output is final.

        A producer taken for dead may have streamed a whole value before its retry
        streamed another; only the attempt the output key names counts.
        """
        marker = streamed_marker(tag.decode())
        stored = await get_bytes(self.client, self.keys.data(key))
        if stored is None:
            stored, issued = await self._wait_marker(key, main)
        if stored == marker:
            return b"".join(chunks), issued, True
        return await get_stored(self.client, self.keys.data(key), self.keys.stream(key)), \
            issued, False

    async def _wait_marker(self, key: str, main: bool) -> tuple[bytes | None, float]:
        async with self._blocked(main):
            raw: bytes = await self.run.waiters.wait(
                self.keys.pubsub(key), lambda: get_bytes(self.client, self.keys.data(key)))
        return raw, time.perf_counter()

    async def _get(self, key: str) -> bytes | None:
        return await get_stored(self.client, self.keys.data(key), self.keys.stream(key))

    async def _store(self, s: Store, main: bool) -> None:
        write = await self._store_write(s, main)
        if write is not None:
            await self._send([write])

    async def _store_write(self, s: Store, main: bool) -> _Write | None:
        """The store's script call (its reply completes the upload's record), or ``None``
        once the upload is complete without one (an adopted output)."""
        rec = self._record(s.task, main)
        # Pickling and sealing belong to the upload, as in the simulator's upload time.
        t0 = time.perf_counter()
        data = self._pickled.pop(s.key, None)
        pickle_s = self._pickle_s.pop(s.key, 0.0)
        if data is None:
            data = cloudpickle.dumps(s.payload.value, protocol=5)
        sealed = self.run.signer.seal(self.run.context(s.key), data)
        run_id = self.run.manifest.run_id

        def stored(reply: Any = 0, write: bool = True) -> None:
            if write:
                check_write(reply, run_id)
            if rec is not None:
                ms = (time.perf_counter() - t0 + pickle_s) * 1000.0
                rec.uploads.append((len(sealed), ms, s.stream))
                rec.end = now_ms()

        if s.key in self._final:
            # An earlier attempt's output is final and this attempt adopted it.
            stored(write=False)
            return None
        value = sealed
        if s.stream:
            # The chunks are the value: the key then only names the attempt that wrote them.
            value = streamed_marker(await self._stream_out(s.key, sealed))
        else:
            await self._check_size(s, len(sealed))
        return _Write(self.run.scripts.store,
                      [self.keys.data(s.key), self.keys.manifest, self.keys.abort,
                       self.keys.inv_attempts],
                      [value, self.keys.pubsub(s.key), *self._fence, self.run.ttl_ms], stored)

    async def _check_size(self, s: Store, nbytes: int) -> None:
        """Fail the task at once if its output exceeds what one Redis command may carry."""
        limit = await self.run.max_bulk()
        if nbytes <= limit:
            return
        task = s.task or s.key
        info = self.run.spec.tasks.get(task)
        function = info.function if info is not None else "?"
        raise TaskFailure(
            task, function, "OutputTooLargeError",
            f"output {s.key!r} is {nbytes:,} bytes sealed, above the Redis server's "
            f"proto-max-bulk-len of {limit:,} bytes; return a smaller value, stream it "
            "(a streamed output travels in chunks), or raise the server's limit", "")

    async def _stream_out(self, key: str, sealed: bytes) -> str:
        skey = self.keys.stream(key)
        tag = f"{self.inv_id}/{self.attempt}"
        step = max(1, self.run.manifest.stream_chunk_bytes)
        count = 0
        for offset in range(0, len(sealed), step):
            await self._xadd(skey, "a", tag, "i", count, "d", sealed[offset:offset + step])
            count += 1
        await self._xadd(skey, "a", tag, "end", count)
        return tag

    async def _xadd(self, skey: str, *fields: Any) -> None:
        check_write(await self.run.scripts.xadd(
            keys=[skey, self.keys.manifest, self.keys.inv_attempts],
            args=[*self._fence, self.run.ttl_ms, len(fields), *fields]),
            self.run.manifest.run_id)

    # -- coordination -------------------------------------------------------------------
    async def _track(self, t: Track, main: bool) -> bool:
        result: bool = (await self._send([self._track_write(t)]))[0]
        return result

    def _track_write(self, t: Track) -> _Write:
        """The track's script call; its reply says whether it completed the fan-in."""
        # Members carry a MAC bound to the run instance and the fan-in, so an entry written
        # by anyone without the key is detected by the worker the set's count triggers.
        context = self.run.context(f"deps:{t.task}")
        run_id = self.run.manifest.run_id

        def tracked(reply: Any) -> bool:
            done = check_write(int(reply[0]), run_id)
            if done in (1, 2):
                members = reply[1]  # read in the same step that completed the set
                finished = {self.run.signer.check_mark(
                    context, m.decode() if isinstance(m, bytes) else str(m)) for m in members}
                if done == 2 or len(finished) != t.expected:
                    raise PayloadAuthError(context, f"{len(members)} entries for {t.expected} "
                                                    "upstream tasks", run_id=run_id)
            return done == 1

        return _Write(self.run.scripts.track,
                      [self.keys.deps(t.task), self.keys.owners, self.keys.manifest,
                       self.keys.inv_attempts],
                      [self.run.signer.mark(context, t.upstream), t.expected, self.inv_id,
                       t.task, self.attempt, self.run.epoch, self.run.ttl_ms], tracked)

    async def _notify(self, n: Notify, main: bool) -> None:
        await self._send([self._notify_write(n)])

    def _notify_write(self, n: Notify) -> _Write:
        """The notification's script call; a sink's is then reported to the client."""
        run_id = self.run.manifest.run_id

        def notified(reply: Any) -> None:
            check_write(reply, run_id)
            sink = self.run.sink_channels.get(n.channel)
            if sink is not None:
                self.outbox.put(("sink", sink))

        return _Write(self.run.scripts.notify,
                      [self.keys.flag(n.channel), self.keys.manifest, self.keys.inv_attempts],
                      [self.keys.pubsub("chan:" + n.channel), *self._fence, self.run.ttl_ms],
                      notified)

    async def _wait_for(self, w: WaitFor, main: bool) -> None:
        flag = self.keys.flag(w.channel)
        if await self.client.exists(flag):
            return
        async with self._blocked(main):
            await self.run.waiters.wait(self.keys.pubsub("chan:" + w.channel),
                                        lambda: get_bytes(self.client, flag))

    async def _invoke(self, i: Invoke, main: bool) -> None:
        inv = i.invocation
        if inv.carried:
            inv = dataclasses.replace(inv, carried={
                key: await self._commit_carried(key, p) for key, p in inv.carried.items()})
        if inv.prewarm:
            inv_id = invocation_id(inv, uuid.uuid4().hex[:12])
            blob = None
        else:
            inv_id = invocation_id(inv)
            blob = inline_blob(self.workflows, self.run.spec, inv) if inv.inline_dag else None
        queued = QueuedInvocation(self.run.manifest.run_id, inv_id, inv, blob, now_ms(),
                                  self.run.manifest.epoch)
        sealed = seal_invocation(self.run.signer, queued)
        queue = pool_queue(self.pool, inv.memory_mb)
        entry = (embedded_entry(queued.run_id, sealed) if inv.prewarm else
                 reference_entry(queued.run_id, queued.epoch, inv_id))
        check_write(await self.run.scripts.enqueue(
            keys=[self.keys.inv_state, self.keys.inv_items, self.keys.inv_queue, queue,
                  self.keys.manifest, self.keys.abort, self.keys.inv_attempts],
            args=[inv_id, sealed, entry, *self._fence, "1" if inv.prewarm else "0",
                  self.run.ttl_ms]), self.run.manifest.run_id)

    # -- execution ----------------------------------------------------------------------
    async def _execute(self, e: Execute, main: bool) -> Payload:
        node = await self._node(e.task)
        rec = self._record(e.task, main)
        assert rec is not None  # Execute always names its task
        if self._first_task:
            self._first_task = False
            rec.startup, rec.startup_ms = self._startup
            rec.start = self._started_at
        rec.input_bytes = sum(p.nbytes for p in e.inputs.values())
        rec.exec_start = now_ms()
        if main and not self._branches_under_way():
            # Nothing else of this invocation is under way: wait for the executor thread
            # without the event loop for a moment, which saves a tiny task the hand-back
            # through the loop; a longer one is then awaited through it. The task runs on
            # the executor thread either way.
            future = self.executor.submit(call_task, e.task, node, e.inputs)
            try:
                outcome = future.result(timeout=QUICK_MS / 1000.0)
            except concurrent.futures.TimeoutError:
                outcome = await asyncio.wrap_future(future)
        else:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self.executor, call_task, e.task, node,
                                                 e.inputs)
        rec.exec_end = now_ms()
        if isinstance(outcome, TaskFailure):
            raise outcome
        value, data, exec_ms, pickle_ms = outcome
        payload = Payload(value_nbytes(value, len(data)), value)
        if self.attempt > 1:
            payload, data = await self._adopt(e.task, payload, data)
        self._pickled[output_key(e.task)] = data
        self._pickle_s[output_key(e.task)] = pickle_ms / 1000.0
        rec.output_bytes, rec.exec_ms = payload.nbytes, exec_ms
        self.outbox.put(("done", e.task, self.label), lazy=True)  # progress only
        return payload

    async def _commit_carried(self, key: str, payload: Payload) -> Payload:
        """Make a result an invocation carries final before it leaves this worker.

        A carried value is published as surely as a stored one: it is stored first (SET
        NX), and if an earlier attempt's value is already there, that one travels.
        """
        data = self._pickled.get(key)
        if data is None:
            data = cloudpickle.dumps(payload.value, protocol=5)
        sealed = self.run.signer.seal(self.run.context(key), data)
        stored = check_write(await self.run.scripts.store(
            keys=[self.keys.data(key), self.keys.manifest, self.keys.abort,
                  self.keys.inv_attempts],
            args=[sealed, self.keys.pubsub(key), *self._fence, self.run.ttl_ms]),
            self.run.manifest.run_id)
        if stored:
            return payload
        raw = await self._get(key)
        return payload if raw is None else self._decode_value(key, raw)

    async def _adopt(self, task: str, payload: Payload, data: bytes) -> tuple[Payload, bytes]:
        """After a retry re-executed ``task``: the output an earlier attempt stored, if any.

        The first stored output of a task is final, so a retried non-deterministic task
        continues with the value every other consumer sees, not with its new one.
        """
        key = output_key(task)
        raw = await self._get(key)
        if raw is None:
            return payload, data
        self._final.add(key)
        body = bytes(self.run.signer.open(self.run.context(key), raw))
        return self._decode_value(key, raw), body

    async def _node(self, task: str) -> TaskNode:
        node = self._find(task)
        if node is None and not self.queued.invocation.inline_dag:
            node = self.parts.node(self.run.spec, task)
        if node is None:
            # Never made up for by fetching more of the DAG: what a worker holds is the
            # worker logic's decision, and the simulator charges exactly that.
            where = ("inline subDAG" if self.queued.invocation.inline_dag
                     else "fetched DAG parts")
            raise KeyError(f"task {task!r} is not in invocation {self.inv_id!r}'s {where}")
        return node

    def _find(self, task: str) -> TaskNode | None:
        for wf in self.workflows:
            node = wf.tasks.get(task)
            if node is not None and node.func.name != EXTERNAL_FUNCTION:
                return node
        return None

    def _branches_under_way(self) -> bool:
        """Whether a spawned branch of this invocation has not ended; ended ones are
        forgotten here (their handles stay with the worker logic that joins them)."""
        if self._spawned:
            self._spawned = [task for task in self._spawned if not task.done()]
        return bool(self._spawned)

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
        effects = p.effects
        if effects and all(type(e) is Track for e in effects):
            return await self._send([self._track_write(t) for t in effects])  # one trip
        batch = self._plain_fetches(effects)
        if batch is not None and len(batch) == len(effects):
            return await self._fetch_many(list(effects), main)  # one trip
        tasks = [asyncio.ensure_future(self._perform(e, main))
                 for i, e in enumerate(effects) if batch is None or i not in batch]
        if batch is not None:
            tasks.append(asyncio.ensure_future(
                self._fetch_many([effects[i] for i in batch], main)))
        try:
            results = list(await asyncio.gather(*tasks))
            if batch is None:
                return results
            merged: list[Any] = [None] * len(effects)
            rest = iter(results[:-1])
            for i in range(len(effects)):
                if i not in batch:
                    merged[i] = next(rest)
            for i, value in zip(batch, results[-1], strict=True):
                merged[i] = value
            return merged
        except BaseException:
            for t in tasks:  # no orphan keeps waiting after one effect failed
                t.cancel()
            raise

    async def _sleep(self, s: Sleep, main: bool) -> None:
        await asyncio.sleep(s.ms / 1000.0)


