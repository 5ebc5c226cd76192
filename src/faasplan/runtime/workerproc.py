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
import logging
import os
import signal
import socket
import struct
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from faasplan.runtime.driver import Driver
from faasplan.runtime.errors import PayloadAuthError, RunStateLostError
from faasplan.runtime.events import LogStream, Outbox
from faasplan.runtime.execution import TaskFailure
from faasplan.runtime.keys import RunKeys, pool_queue, queue_memory
from faasplan.runtime.manifest import (
    QueuedInvocation,
    QueueEntry,
    now_ms,
    open_invocation,
    parse_entry,
    unpack_manifest,
)
from faasplan.runtime.redisio import MAX_BLOCK_S, connect, get_bytes
from faasplan.runtime.runstate import RunAborted, RunState
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
                 on_block: Callable[[bool], None] | None = None) -> None:
        self.client = client
        self.signer = signer
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faasplan-task")
        self._on_block = on_block
        self._runs: OrderedDict[str, RunState] = OrderedDict()

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
            args=[inv_id, self.name, run.manifest.lease_ms, claimed])
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
                await self._end(run, inv_id, "failed", [_bad_entry_event(run.manifest.run_id,
                                                                         exc)])
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

    async def _end(self, run: RunState, inv_id: str, status: str,
                   events: list[tuple[Any, ...]]) -> None:
        """Push the last events and mark the invocation finished, in one step."""
        context = event_context(run.manifest.run_id)
        await run.scripts.finish(
            keys=[run.keys.inv_state, run.keys.lease(inv_id), run.keys.manifest,
                  run.keys.events],
            args=[inv_id, status, *(self.signer.dumps(context, e) for e in events)])

    async def _run(self, run: RunState, queued: QueuedInvocation, attempt: int,
                   startup: tuple[str, float], begin: float, received: float) -> None:
        outbox = Outbox(self.client, run.keys, self.signer,
                        event_context(run.manifest.run_id))
        inv = queued.invocation
        label = invocation_label(inv)
        stream = LogStream(self.client, run.keys.log)
        heartbeat = asyncio.create_task(self._heartbeat(run.keys, queued.inv_id,
                                                        run.manifest.lease_ms))
        driver: Driver | None = None
        status = "done"
        try:
            driver = Driver(run, queued, attempt=attempt, label=label, startup=startup,
                            started_at=begin, executor=self.executor, pool=self.signer.pool,
                            outbox=outbox, on_block=self._on_block, log=stream)
            await driver.run_branch()
        except RunAborted:
            await self._forget(run.manifest.run_id)
            return
        except TaskFailure as f:
            status = "failed"
            stream.put(Event(label, "fail", f.task, None, 0, now_ms(), now_ms(), f.tb))
            outbox.put(("fail", "task", {"task": f.task, "function": f.function,
                                         "exc_type": f.exc_type, "message": f.message,
                                         "traceback": f.tb}))
        except PayloadAuthError as exc:
            status = "failed"
            outbox.put(("fail", "auth", {"context": exc.context, "message": str(exc)}))
        except RunStateLostError as exc:
            status = "failed"
            outbox.put(("fail", "lost", {"message": str(exc)}))
        except Exception as exc:
            status = "failed"
            outbox.put(("fail", "internal", {"invocation": queued.inv_id,
                                             "exc_type": type(exc).__name__,
                                             "message": str(exc),
                                             "traceback": traceback.format_exc()}))
        finally:
            heartbeat.cancel()
        # Wait for the heartbeat to stop: a lease write still in flight must reach Redis
        # before the end of the invocation deletes the lease, or it outlives the run.
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
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
            await outbox.close()
            await stream.close()
            await self._end(run, queued.inv_id, status, final)
        except Exception:
            log.exception("could not report the end of invocation %s of run %s",
                          queued.inv_id, run.manifest.run_id)

    async def _heartbeat(self, keys: RunKeys, inv_id: str, lease_ms: int) -> None:
        while True:
            await asyncio.sleep(lease_ms / 3000.0)
            with contextlib.suppress(Exception):
                # SET, not PEXPIRE: after a Redis restart the lease must come back.
                await self.client.set(keys.lease(inv_id), self.name, px=lease_ms)

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
        outbox = Outbox(self.client, run.keys, self.signer,
                        event_context(run.manifest.run_id))
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


async def _emulated(url: str) -> int:
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

    worker = WorkerProcess(client, Signer(key), on_block=status)
    write_frame(proto_out, b"R")
    try:
        while (frame := await read_frame(reader)) is not None:
            kind, dispatched_at = _DISPATCH.unpack_from(frame)
            await worker.serve(frame[_DISPATCH.size:], cold=kind == b"C",
                               dispatched_at=dispatched_at)
            write_frame(proto_out, b"D")
    finally:
        await worker.close()
        await client.aclose()
    return 0


# -- standalone mode: BLPOP on the pool's queues ----------------------------------------------
async def _standalone(url: str, key: bytes, memories: Sequence[int], keep_alive_s: float
                      ) -> int:
    client = connect(url)
    signer = Signer(key)
    worker = WorkerProcess(client, signer)
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
            return asyncio.run(_emulated(args.redis))
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
        return asyncio.run(_standalone(args.redis, key, memories, args.keep_alive))
    except (ValueError, OSError) as exc:
        print(f"faasplan worker: {exc}", file=sys.stderr)
        return 2
