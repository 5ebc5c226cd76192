"""A worker process: takes invocations, runs them with the :class:`~.driver.Driver`.

Two ways in, one way of serving:

* **emulated** (started by :class:`~faasplan.runtime.faas.LocalFaaS`): the HMAC key and
  then each dispatched queue entry arrive framed on stdin; status bytes go back on the
  original stdout (``R`` ready, ``D`` done, ``B``/``U`` blocked/unblocked). Task output
  printed to stdout is redirected to stderr so it cannot corrupt the protocol.
* **standalone** (``python -m faasplan.runtime.worker --redis URL``): BLPOP on the pool's
  queues in Redis; the key comes from ``FAASPLAN_HMAC_KEY`` or ``--hmac-key-file``.

At the first invocation of a run a worker fetches the run's manifest and checks the
workflow's requirements; if some are missing it reports them to the client and refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from faasplan.runtime import eventloop
from faasplan.runtime.driver import Driver
from faasplan.runtime.errors import PayloadAuthError, RunStateLostError
from faasplan.runtime.events import LogStream, Outbox
from faasplan.runtime.execution import TaskFailure
from faasplan.runtime.invoking import HeldParts
from faasplan.runtime.keys import RunKeys, pool_queue, queue_memory
from faasplan.runtime.manifest import (
    QueuedInvocation,
    QueueEntry,
    now_ms,
    open_invocation,
    parse_entry,
    unpack_manifest,
)
from faasplan.runtime.redisio import (
    CONNECTION_ERRORS,
    LEASE,
    MAX_BLOCK_S,
    connect,
    get_bytes,
    is_out_of_memory,
    run_pipelined,
)
from faasplan.runtime.runstate import RunAborted, RunState, Superseded
from faasplan.runtime.security import KEY_ENV, Signer, key_from_env, parse_key, redact
from faasplan.worker.log import Event, invocation_label
from faasplan.workflow.requirements import missing_requirements

log = logging.getLogger("faasplan.runtime.worker")

_FRAME = struct.Struct(">I")
_DISPATCH = struct.Struct(">cd")
_KEEP_RUNS = 4


@cache
def _missing(requirements: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(missing_requirements(requirements))


def event_context(run_id: str) -> str:
    """MAC context of the events a run's workers send to its client."""
    return f"{run_id}/event"


class WorkerProcess:
    """Serves invocations one at a time; keeps per-run state while warm."""

    def __init__(self, client: aioredis.Redis, signer: Signer,
                 on_block: Callable[[bool], None] | None = None,
                 heartbeat: HeartbeatProcess | None = None) -> None:
        self.client = client
        self.heartbeat = heartbeat
        self.signer = signer
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faasplan-task")
        self._on_block = on_block
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        # The DAG parts fetched per run, kept while the process is warm and the run known.
        self._parts: weakref.WeakKeyDictionary[RunState, HeldParts] = \
            weakref.WeakKeyDictionary()

    async def serve(self, entry: bytes, *, cold: bool, dispatched_at: float | None) -> None:
        """Authenticate, claim and run one queue entry; report its outcome to the client.

        Never raises: whatever goes wrong is reported to the run's client (or logged when
        the run cannot be told).
        """
        received = now_ms()
        try:
            parsed = parse_entry(entry)
        except ValueError as exc:
            log.error("dropped a queue entry: %s", exc)
            return
        queued: QueuedInvocation | None = None
        try:
            if parsed.sealed is not None:
                queued = open_invocation(self.signer, parsed.run_id, parsed.sealed)
            run = await self._run_state(parsed.run_id,
                                        queued.epoch if queued is not None else parsed.epoch)
        except Exception as exc:
            await self._report_bad_entry(parsed.run_id, exc)
            return
        if run is None:
            return  # the run finished or was cleaned up; a late duplicate entry
        try:
            await self._serve(run, parsed, queued, cold, dispatched_at, received)
        except Exception:
            log.exception("invocation %s of run %s failed before it started",
                          parsed.inv_id or "(embedded)", parsed.run_id)

    async def _serve(self, run: RunState, parsed: QueueEntry, queued: QueuedInvocation | None,
                     cold: bool, dispatched_at: float | None, received: float) -> None:
        if run.missing_requirements:
            await self._report(run, ("fail", "requirements",
                                     {"worker": self.name,
                                      "missing": list(run.missing_requirements)}))
            return
        if queued is not None and queued.invocation.prewarm:
            await self._report_prewarm(run, queued, cold, dispatched_at, received)
            return
        inv_id = queued.inv_id if queued is not None else parsed.inv_id
        claimed = self.signer.dumps(event_context(run.manifest.run_id), ("claim", inv_id))
        attempt, sealed = await run.scripts.claim(
            keys=[run.keys.inv_state, run.keys.lease(inv_id), run.keys.inv_attempts,
                  run.keys.manifest, run.keys.abort, run.keys.events, run.keys.inv_items],
            args=[inv_id, self.name, run.manifest.lease_ms, claimed, run.epoch, run.ttl_ms])
        if attempt < 0:
            await self._forget(run.manifest.run_id)
            return  # the run is over
        if not attempt:
            return  # a duplicate of an invocation that is running or finished
        if queued is None:
            try:
                if sealed is None:
                    raise KeyError(f"invocation {inv_id!r} has no stored body")
                queued = open_invocation(self.signer, run.manifest.run_id, sealed)
                if queued.inv_id != inv_id:
                    raise PayloadAuthError(f"{run.manifest.run_id}/inv",
                                           f"entry names {inv_id!r}, body is {queued.inv_id!r}")
            except Exception as exc:
                await self._end(run, inv_id, int(attempt), "failed",
                                [_bad_entry_event(run.manifest.run_id, exc)])
                return
        reference = dispatched_at if dispatched_at is not None else queued.enqueued_at
        begin = now_ms()
        startup = ("cold" if cold else "warm", max(0.0, begin - min(reference, received)))
        await self._run(run, queued, int(attempt), startup, begin, received)

    async def _report_prewarm(self, run: RunState, queued: QueuedInvocation, cold: bool,
                              dispatched_at: float | None, received: float) -> None:
        """A pre-warm only starts this sandbox: report it as an invocation without tasks."""
        inv = queued.invocation
        reference = dispatched_at if dispatched_at is not None else queued.enqueued_at
        begin = now_ms()
        state = "cold" if cold else "warm"
        label = f"prewarm-{queued.inv_id}"
        log = [tuple(Event(label, "start", None, None, inv.memory_mb, begin, begin, state)),
               tuple(Event(label, "end", None, None, 0, begin, begin))]
        await self._report(run, ("rows", [], {
            "worker": label, "memory_mb": inv.memory_mb, "pid": os.getpid(),
            "enqueued": queued.enqueued_at, "received": received, "begin": begin, "end": begin,
            "startup_state": state, "startup_ms": max(0.0, begin - min(reference, received)),
            "tasks": 0, "attempt": 0, "prewarm": True, "log": log}))

    async def _end(self, run: RunState, inv_id: str, attempt: int, status: str,
                   events: list[tuple[Any, ...]], sealed: Sequence[bytes] = (),
                   log_entries: tuple[LogStream, list[str]] | None = None) -> None:
        """Push the last events (``sealed`` ones first, already sealed) and mark the
        invocation finished, in one step (only while ``attempt`` is the invocation's
        current one). ``log_entries``: the log stream's last entries
        (:meth:`LogStream.take`), added just before, in the same round trip."""
        context = event_context(run.manifest.run_id)
        keys = [run.keys.inv_state, run.keys.lease(inv_id), run.keys.manifest,
                run.keys.events, run.keys.inv_attempts]
        args: list[str | int | bytes] = [inv_id, status, attempt, run.epoch, run.ttl_ms, *sealed,
                *(self.signer.dumps(context, e) for e in events)]
        if log_entries is None or not log_entries[1]:
            await run.scripts.finish(keys=keys, args=args)
            return
        stream, entries = log_entries
        (reply,) = await run_pipelined(run.client, [(run.scripts.finish, keys, args)],
                                       before=lambda pipe: stream.add_to(pipe, entries))
        if isinstance(reply, Exception):  # the log is best effort, the end is not
            raise reply

    async def _run(self, run: RunState, queued: QueuedInvocation, attempt: int,
                   startup: tuple[str, float], begin: float, received: float) -> None:
        outbox = self._outbox(run)
        inv = queued.invocation
        label = invocation_label(inv)
        stream = LogStream(self.client, run.keys.log)
        lease = Lease(run.keys.lease(queued.inv_id), run.keys.inv_state, run.keys.inv_attempts,
                      run.keys.manifest, self.name, run.manifest.lease_ms, queued.inv_id,
                      attempt, run.epoch)
        heartbeat = self._start_heartbeat(run, lease)
        driver: Driver | None = None
        status = "done"
        try:
            driver = Driver(run, queued, attempt=attempt, label=label, startup=startup,
                            started_at=begin, executor=self.executor, pool=self.signer.pool,
                            outbox=outbox, on_block=self._on_block, log=stream,
                            parts=self._parts.setdefault(run, HeldParts()))
            await driver.run_branch()
        except Superseded:
            # Taken for dead and claimed again: the newer attempt reports; this one is
            # fenced off and must not finish the invocation.
            log.warning("invocation %s of run %s (attempt %d) was claimed again; stopped",
                        queued.inv_id, run.manifest.run_id, attempt)
            await self._stop_heartbeat(heartbeat)
            return
        except RunAborted:
            await self._stop_heartbeat(heartbeat)
            await self._forget(run.manifest.run_id)
            return
        except CONNECTION_ERRORS as exc:
            # Redis went away: say nothing (it cannot be told), let the lease expire, and
            # the client retries the invocation once Redis is back.
            log.warning("invocation %s of run %s lost Redis (%s); left to its retry",
                        queued.inv_id, run.manifest.run_id, exc)
            await self._stop_heartbeat(heartbeat)
            return
        except TaskFailure as f:
            status = "failed"
            stream.put(Event(label, "fail", f.task, None, 0, now_ms(), now_ms(), f.tb))
            outbox.put(("fail", "task", {"task": f.task, "function": f.function,
                                         "exc_type": f.exc_type, "message": f.message,
                                         "traceback": f.tb}), lazy=True)
        except PayloadAuthError as exc:
            status = "failed"
            stream.put(Event(label, "fail", None, None, 0, now_ms(), now_ms(), str(exc)))
            outbox.put(("fail", "auth", {"context": exc.context, "message": str(exc)}), lazy=True)
        except RunStateLostError as exc:
            status = "failed"
            outbox.put(("fail", "lost", {"message": str(exc)}), lazy=True)
        except Exception as exc:
            status = "failed"
            if is_out_of_memory(exc):
                await self._stop_heartbeat(heartbeat)
                await self._report_oom(run, queued.inv_id, attempt, exc)
                return
            outbox.put(("fail", "internal", {"invocation": queued.inv_id,
                                             "exc_type": type(exc).__name__,
                                             "message": str(exc),
                                             "traceback": traceback.format_exc()}), lazy=True)
        # A lease renewal after the end is refused by its script (the invocation is no
        # longer running), so stopping the heartbeat need not wait for Redis.
        await self._stop_heartbeat(heartbeat)
        try:
            final: list[tuple[Any, ...]] = [("inv", queued.inv_id, status)]
            if driver is not None:
                rows = driver.rows()
                final.insert(0, ("rows", rows, {
                    "worker": label, "memory_mb": inv.memory_mb, "pid": os.getpid(),
                    "enqueued": queued.enqueued_at, "received": received, "begin": begin,
                    "end": now_ms(), "startup_state": startup[0], "startup_ms": startup[1],
                    "tasks": len(rows), "attempt": attempt,
                    "log": [tuple(ev) for ev in driver.events]}))
            # The log stream first: once the client reads a failure from the outbox it may
            # end the run and delete its keys, and the dashboard's traceback with them. So
            # the events still queued (progress, a failure) go with the last ones, after
            # the log's last entries, in one round trip.
            await self._end(run, queued.inv_id, attempt, status, final, await outbox.take(),
                            (stream, await stream.take()))
        except Exception:
            log.exception("could not report the end of invocation %s of run %s",
                          queued.inv_id, run.manifest.run_id)

    async def _report_oom(self, run: RunState, inv_id: str, attempt: int, exc: Exception,
                          tries: int = 20, pause_s: float = 0.25) -> None:
        """Tell the client that Redis refused a write for lack of memory.

        The report is a write too: it is tried again for a few seconds, as memory comes
        and goes with the requests in flight (a large value counts while it arrives).
        """
        info: dict[str, Any] = {"invocation": inv_id, "message": str(exc)}
        with contextlib.suppress(Exception):
            memory: Any = await self.client.info("memory")
            info["used"] = str(memory.get("used_memory_human", "?"))
            info["limit"] = str(memory.get("maxmemory_human", "?"))
        for _ in range(tries):
            try:
                await self._end(run, inv_id, attempt, "failed", [("fail", "oom", info)])
                return
            except Exception as again:
                if not is_out_of_memory(again):
                    break
                await asyncio.sleep(pause_s)
        log.error("invocation %s of run %s: Redis is out of memory and refused the report",
                  inv_id, run.manifest.run_id)

    def _outbox(self, run: RunState) -> Outbox:
        return Outbox(self.client, run.keys, self.signer, event_context(run.manifest.run_id),
                      epoch=run.epoch, ttl_ms=run.manifest.key_ttl_ms, scripts=run.scripts)

    def _start_heartbeat(self, run: RunState, lease: Lease) -> asyncio.Task[None] | None:
        if self.heartbeat is not None:
            self.heartbeat.begin(lease)
            return None
        return asyncio.create_task(self._heartbeat(run, lease))

    async def _stop_heartbeat(self, task: asyncio.Task[None] | None) -> None:
        if self.heartbeat is not None:
            self.heartbeat.end()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeat(self, run: RunState, lease: Lease) -> None:
        """In-process lease renewal, for hosts that run a worker without its heartbeat
        process (a Dask worker); task code holding the GIL stalls it."""
        while True:
            await asyncio.sleep(lease.lease_ms / 3000.0)
            with contextlib.suppress(Exception):
                # SET, not PEXPIRE: after a Redis restart the lease must come back.
                if await run.scripts.lease(keys=lease.keys, args=lease.args) != 1:
                    return

    async def _run_state(self, run_id: str, epoch: str) -> RunState | None:
        run = self._runs.get(run_id)
        if run is not None and run.manifest.epoch == epoch:
            self._runs.move_to_end(run_id)
            return run
        await self._forget(run_id)  # an earlier run that used the same id
        keys = RunKeys(run_id)
        raw = await get_bytes(self.client, keys.manifest)
        if raw is None:
            return None
        manifest = unpack_manifest(self.signer, run_id, raw)
        if manifest.epoch != epoch:
            return None  # a late entry of an earlier run with the same id
        run = RunState(self.client, self.signer, manifest, list(_missing(manifest.requirements)))
        self._runs[run_id] = run
        while len(self._runs) > _KEEP_RUNS:
            _, old = self._runs.popitem(last=False)
            await old.close()
        return run

    async def _forget(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            await run.close()

    async def _report(self, run: RunState, event: tuple[Any, ...]) -> None:
        outbox = self._outbox(run)
        outbox.put(event)
        await outbox.close()

    async def _report_bad_entry(self, run_id: str, exc: Exception) -> None:
        log.error("rejected a queue entry for run %r: %s", run_id, exc)
        keys = RunKeys(run_id)
        with contextlib.suppress(Exception):
            # Only an active run hears of it; never create keys for unknown runs.
            if await self.client.exists(keys.manifest):
                outbox = Outbox(self.client, keys, self.signer, event_context(run_id))
                outbox.put(_bad_entry_event(run_id, exc))
                await outbox.close()

    async def close(self) -> None:
        """Release per-run connections and the executor."""
        for run in self._runs.values():
            await run.close()
        self._runs.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)


# -- the heartbeat process ------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """The lease of one attempt of an invocation, as the ``LEASE`` script renews it."""

    key: str
    state_key: str
    attempts_key: str
    manifest_key: str
    owner: str
    lease_ms: int
    inv_id: str
    attempt: int
    epoch: str

    @property
    def keys(self) -> list[str]:
        """``KEYS`` of the script."""
        return [self.key, self.state_key, self.attempts_key, self.manifest_key]

    @property
    def args(self) -> list[str | int]:
        """``ARGV`` of the script."""
        return [self.owner, self.lease_ms, self.inv_id, self.attempt, self.epoch]


class LeaseSlot:
    """The lease a worker runs under, in memory its heartbeat process shares (``mmap``).

    Writing it is a copy in memory: no system call and no wake-up of the reader per
    invocation. The writer is one thread; a reader takes a record only when its sequence
    number was even and unchanged around the read and its checksum holds (a torn read is
    retried a millisecond later). Layout: sequence (8 bytes), length (4), checksum (4), data.
    """

    HEADER = struct.Struct("<QII")
    SIZE = 1 << 16

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, self.SIZE)  # anonymous and shared: seen across fork
        self._seq = 0

    def write(self, data: bytes) -> None:
        """Publish ``data`` (``b""``: no lease)."""
        if len(data) > self.SIZE - self.HEADER.size:
            raise ValueError(f"a lease record of {len(data)} bytes does not fit the "
                             f"{self.SIZE}-byte heartbeat slot")
        mem = self._mem
        self._seq += 1  # odd: being written
        mem[0:8] = self._seq.to_bytes(8, "little")
        end = self.HEADER.size + len(data)
        mem[self.HEADER.size:end] = data
        self._seq += 1  # even: complete
        mem[0:self.HEADER.size] = self.HEADER.pack(self._seq, len(data),
                                                   zlib.crc32(data, self._seq))

    def read(self) -> tuple[int, bytes] | None:
        """``(sequence, data)`` of the last complete record; ``None`` if one is being
        written right now."""
        mem = self._mem
        seq, length, crc = self.HEADER.unpack_from(mem, 0)
        if seq % 2 or length > self.SIZE - self.HEADER.size:
            return None
        data = mem[self.HEADER.size:self.HEADER.size + length]
        if self.HEADER.unpack_from(mem, 0)[0] != seq or zlib.crc32(data, seq) != crc:
            return None
        return seq, data


class HeartbeatProcess:
    """A child process that renews the lease of the invocation its parent runs.

    Task code holding the GIL (a long regular-expression match, a C extension) stops
    every thread of the worker, so the lease is renewed from another process: forked
    before the worker starts any thread, holding its own Redis connection. The parent
    publishes each invocation's lease in a :class:`LeaseSlot`; the child looks at it
    every sixth of a lease, idle or not (so it renews a new lease within half of its
    duration, then every third), and is woken through a pipe only when the lease
    duration changes.
    It stops renewing while its parent is stopped (SIGSTOP: a paused worker is taken for
    dead and its invocation retried) and exits when the pipe closes (the parent exited
    or was killed).
    """

    def __init__(self, url: str) -> None:
        self._slot = LeaseSlot()
        self._lease_ms: int | None = None
        read_end, self._pipe = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 0
            try:
                os.close(self._pipe)
                _heartbeat_child(url, read_end, parent, self._slot)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(read_end)
        self.pid = pid

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the child is gone: leases lapse, retries follow
            os.write(self._pipe, b"\n")

    def begin(self, lease: Lease) -> None:
        """Renew ``lease`` from now on (within half of its duration, then every third)."""
        self._slot.write(json.dumps([getattr(lease, f.name)
                                     for f in dataclasses.fields(Lease)]).encode())
        if lease.lease_ms != self._lease_ms:
            self._lease_ms = lease.lease_ms
            self._wake()  # it looks as often as the lease says: let it read this one now

    def end(self) -> None:
        """Stop renewing (the invocation ended)."""
        self._slot.write(b"")

    def close(self) -> None:
        """Stop the child and reap it."""
        with contextlib.suppress(OSError):
            os.close(self._pipe)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _parent_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (by SIGSTOP or a tracer); Linux ``/proc`` only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


def _heartbeat_child(url: str, pipe: int, parent: int, slot: LeaseSlot) -> None:
    import redis as sync_redis

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Hold no descriptor of the parent's (its protocol pipes must close when it dies).
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.closerange(3, pipe)
    os.closerange(pipe + 1, max(pipe + 2, os.sysconf("SC_OPEN_MAX")))
    client = sync_redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    renew = client.register_script(LEASE)
    look_s: float | None = None  # a sixth of the last lease's duration (none yet: wait)
    seen = 0
    lease: Lease | None = None
    renew_at = 0.0
    retry = False
    while True:
        timeout = look_s
        if retry:
            timeout, retry = 0.001, False
        elif lease is not None and look_s is not None:
            timeout = max(0.0, min(look_s, renew_at - time.monotonic()))
        readable, _, _ = select.select([pipe], [], [], timeout)
        if readable and (not os.read(pipe, 65536) or os.getppid() != parent):
            return  # the pipe closed: the parent is gone
        now = time.monotonic()
        record = slot.read()
        if record is None:  # being written this very moment: look again shortly
            retry = True
            continue
        if record[0] != seen:
            seen = record[0]
            lease = Lease(*json.loads(record[1])) if record[1] else None
            if lease is not None:
                look_s = lease.lease_ms / 6000.0
                renew_at = now + lease.lease_ms / 3000.0
        if lease is None or now < renew_at:
            continue
        renew_at = now + lease.lease_ms / 3000.0
        if _parent_stopped(parent):
            continue
        try:
            if renew(keys=lease.keys, args=lease.args) != 1:
                lease = None  # ended, claimed again, or the run is over
        except sync_redis.RedisError:
            pass  # Redis away: the lease lapses unless it comes back in time


def _bad_entry_event(run_id: str, exc: Exception) -> tuple[Any, ...]:
    if isinstance(exc, PayloadAuthError):
        return ("fail", "auth", {"context": exc.context, "message": str(exc)})
    return ("fail", "internal", {"invocation": "(queue entry)", "exc_type": type(exc).__name__,
                                 "message": str(exc), "traceback": ""})


# -- emulated mode: framed pipes --------------------------------------------------------------
def write_frame(fd: int, data: bytes) -> None:
    """Write one length-prefixed frame to a file descriptor."""
    os.write(fd, _FRAME.pack(len(data)) + data)


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """Read one length-prefixed frame; ``None`` at end of stream."""
    try:
        head = await reader.readexactly(_FRAME.size)
        return await reader.readexactly(_FRAME.unpack(head)[0])
    except asyncio.IncompleteReadError:
        return None


def dispatch_frame(cold: bool, dispatched_at: float, entry: bytes) -> bytes:
    """The frame an emulator sends a worker process for one queue entry."""
    return _DISPATCH.pack(b"C" if cold else b"W", dispatched_at) + entry


async def _emulated(url: str, heartbeat: HeartbeatProcess | None = None) -> int:
    # Keep the protocol streams for ourselves; task code printing goes to stderr.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proto_in)
    key = await read_frame(reader)
    if key is None:
        return 2
    client = connect(url)

    def status(blocked: bool) -> None:
        with contextlib.suppress(OSError):  # the emulator is gone: stdin EOF ends us
            write_frame(proto_out, b"B" if blocked else b"U")

    worker = WorkerProcess(client, Signer(key), on_block=status, heartbeat=heartbeat)
    orphaned = asyncio.create_task(_exit_when_orphaned(os.getppid()))
    write_frame(proto_out, b"R")
    try:
        while (frame := await read_frame(reader)) is not None:
            kind, dispatched_at = _DISPATCH.unpack_from(frame)
            await worker.serve(frame[_DISPATCH.size:], cold=kind == b"C",
                               dispatched_at=dispatched_at)
            write_frame(proto_out, b"D")
    finally:
        orphaned.cancel()
        await worker.close()
        await client.aclose()
    return 0


async def _exit_when_orphaned(parent: int, period_s: float = 0.5) -> None:
    """End this emulated worker at once when the emulator's process is gone.

    A graceful stop closes stdin and lets the invocation in flight finish; a dead client
    (SIGKILL) cannot, and nothing it started must outlive it.
    """
    while True:
        await asyncio.sleep(period_s)
        if os.getppid() != parent:
            log.warning("the emulator (pid %d) is gone; exiting", parent)
            os._exit(1)


# -- standalone mode: BLPOP on the pool's queues ----------------------------------------------
async def _standalone(url: str, key: bytes, memories: Sequence[int], keep_alive_s: float,
                      heartbeat: HeartbeatProcess | None = None) -> int:
    client = connect(url)
    signer = Signer(key)
    worker = WorkerProcess(client, signer, heartbeat=heartbeat)
    queues = [pool_queue(signer.pool, m) for m in memories]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("worker %s serving pool %s, memory %s MB, on %s", worker.name, signer.pool,
             list(memories), redact(url))
    cold = True
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            try:
                popped: Any = await client.blpop(queues, timeout=MAX_BLOCK_S)
            except Exception as exc:
                log.warning("Redis unreachable (%s); retrying", exc)
                await asyncio.sleep(MAX_BLOCK_S)
                continue
            if popped is None:
                if keep_alive_s and time.monotonic() - idle_since > keep_alive_s:
                    break
                continue
            queue, entry = popped
            log.debug("invocation from %s MB queue", queue_memory(queue.decode()))
            await worker.serve(bytes(entry), cold=cold, dispatched_at=None)
            cold = False
            idle_since = time.monotonic()
    finally:
        await worker.close()
        await client.aclose()
    return 0


WORKER_DESCRIPTION = ("Serve faasplan invocations from a Redis queue. The HMAC key shared with "
                      f"the client comes from ${KEY_ENV} (hex) or --hmac-key-file.")


def add_worker_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the worker's options to ``p`` (``faasplan worker`` and ``-m ...worker`` share them)."""
    p.add_argument("--redis", required=True, metavar="URL",
                   help="Redis URL, e.g. redis://:PASSWORD@host:6379/0")
    p.add_argument("--memory", type=int, action="append", metavar="MB",
                   help="memory size whose queue to serve (repeatable; default 1024)")
    p.add_argument("--keep-alive", type=float, default=0.0, metavar="S",
                   help="exit after S idle seconds (default 0: run until stopped)")
    p.add_argument("--hmac-key-file", type=Path, metavar="PATH",
                   help="file holding the hex key (instead of the environment variable)")
    p.add_argument("--emulated", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="log every invocation")
    return p


def _parser() -> argparse.ArgumentParser:
    return add_worker_arguments(argparse.ArgumentParser(prog="faasplan worker",
                                                        description=WORKER_DESCRIPTION))


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``faasplan worker`` / ``python -m faasplan.runtime.worker``.

    Returns the process exit code: 0 after a clean stop, 2 for a configuration error.
    """
    return serve(_parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Run a worker with options parsed by a parser of :func:`add_worker_arguments`."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s worker %(process)d %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        from faasplan.runtime.security import check_redis_url
        check_redis_url(args.redis)
        if args.emulated:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator decides when to stop
            return _with_heartbeat(args.redis, lambda hb: _emulated(args.redis, hb))
        if args.hmac_key_file is not None:
            key: bytes | None = parse_key(args.hmac_key_file.read_text())
        else:
            key = key_from_env()
        if key is None:
            print(f"faasplan worker: no HMAC key; set {KEY_ENV} to the client's key (hex) or "
                  "pass --hmac-key-file", file=sys.stderr)
            return 2
        memories = args.memory or [1024]
        bad = [m for m in memories if m <= 0]
        if bad:
            print(f"faasplan worker: --memory must be > 0 MB, got {bad}", file=sys.stderr)
            return 2
        return _with_heartbeat(args.redis, lambda hb: _standalone(
            args.redis, key, memories, args.keep_alive, hb))
    except (ValueError, OSError) as exc:
        print(f"faasplan worker: {exc}", file=sys.stderr)
        return 2


def _with_heartbeat(url: str, main: Callable[[HeartbeatProcess | None], Any]) -> int:
    """Fork the heartbeat process (before any thread exists), then run ``main`` with it."""
    heartbeat = HeartbeatProcess(url) if hasattr(os, "fork") else None
    try:
        return int(eventloop.run(main(heartbeat)))
    finally:
        if heartbeat is not None:
            heartbeat.close()
