"""A local FaaS platform emulator: per-memory pools of worker processes fed from Redis.

:class:`LocalFaaS` plays the part of the platform's invoker, one of the two
implementations of :class:`faasplan.runtime.invoker.Invoker`. A dispatcher pops entries
from the pool's invocation queues in Redis (so workers started elsewhere with
``faasplan worker --redis URL`` and the same key serve the same queues) and hands each
to a process of the requested memory size: an idle one if there is one (a **warm**
start), else a new process (a **cold** start). Idle processes exit after ``keep_alive_s``.
Memory sizes are nominal: processes are not limited.

Admission follows the rule of the simulator's concurrency limit
(:meth:`faasplan.worker.RunSpec.check_concurrency`): at most ``max_processes`` processes
exist, and an invocation holds its process from dispatch to its end, waiting included; an
idle process of another size is stopped to make room. Plans whose waiting workers could
fill every process are refused before they start. Queues of different memory sizes are
served in turn, so none starves. Separately, at most ``max_running`` processes compute at
once (a process blocked waiting for another worker's output does not count), which keeps
the host's cores from being oversubscribed. The HMAC key reaches each process through its
stdin pipe, the Redis URL (password included) through ``FAASPLAN_REDIS_URL``: no secret is
on a command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from faasplan.runtime import eventloop
from faasplan.runtime.keys import pool_queue, queue_memory
from faasplan.runtime.redisio import MAX_BLOCK_S, connect
from faasplan.runtime.security import KEY_ENV, URL_ENV, Signer, check_redis_url, parse_key
from faasplan.runtime.workerproc import dispatch_frame, read_frame

log = logging.getLogger("faasplan.runtime.faas")

_FRAME_HEAD = 4


@dataclass(frozen=True, slots=True)
class FaaSStats:
    """Counters of one emulator: starts by kind, processes now and at most."""

    cold_starts: int
    warm_starts: int
    processes: int
    peak_processes: int


class _Proc:
    """One worker process and what the dispatcher knows of it."""

    def __init__(self, proc: asyncio.subprocess.Process, memory: int) -> None:
        self.proc = proc
        self.memory = memory
        self.state = "busy"  # busy | blocked | idle | stopping | dead
        self.idle_since = time.monotonic()
        self.in_flight: bytes | None = None
        self.queue = ""

    def send(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(frame).to_bytes(_FRAME_HEAD, "big") + frame)

    def stop(self) -> None:
        self.state = "stopping"
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()


class LocalFaaS:
    """Local FaaS emulator; use as a context manager or call :meth:`start`/:meth:`close`.

    Parameters
    ----------
    redis_url : str
        Where the invocation queues live.
    hmac_key : bytes or str
        The key shared with the client (hex string accepted); it selects the pool.
    max_running : int, optional
        Processes running at once (default: 4 per CPU).
    max_processes : int
        Processes alive at once, idle or blocked included.
    keep_alive_s : float
        An idle process exits after this long (its next invocation is a cold start).
    python : str
        Interpreter for the worker processes.
    """

    def __init__(self, redis_url: str, hmac_key: bytes | str, *, max_running: int | None = None,
                 max_processes: int = 64, keep_alive_s: float = 60.0,
                 python: str = sys.executable) -> None:
        check_redis_url(redis_url)
        self.redis_url = redis_url
        self._key = parse_key(hmac_key)
        self.pool = Signer(self._key).pool
        self.max_running = max_running or 4 * (os.cpu_count() or 1)
        if self.max_running < 1 or max_processes < self.max_running:
            raise ValueError(f"LocalFaaS: need 1 <= max_running <= max_processes, got "
                             f"max_running={self.max_running}, max_processes={max_processes}")
        self.max_processes = max_processes
        self.keep_alive_s = keep_alive_s
        self.python = python
        self._memories: set[int] = set()
        self._procs: list[_Proc] = []
        self._cold = 0
        self._warm = 0
        self._peak = 0
        self._control = f"fp:pool:{self.pool}:ctl:{uuid.uuid4().hex[:12]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._client: aioredis.Redis | None = None
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._turn = 0

    # -- lifecycle (any thread) ------------------------------------------------------------
    def start(self) -> LocalFaaS:
        """Start the dispatcher thread; returns ``self``."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="faasplan-faas",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._error is not None:
            raise RuntimeError(f"LocalFaaS could not start: {self._error}") from self._error
        return self

    def serve(self, memories: Iterable[int]) -> None:
        """Also serve the queues of these memory sizes."""
        new = {int(m) for m in memories} - self._memories
        if not new:
            return
        self._memories |= new
        self._poke()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop dispatching; let busy processes finish their invocation, then stop them all."""
        if self._thread is None or self._closing:
            return
        self._closing = True
        self._poke()
        self._thread.join(timeout_s + 5.0)

    def __enter__(self) -> LocalFaaS:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def stats(self) -> FaaSStats:
        """Cold and warm starts so far, live and peak process counts."""
        alive = sum(1 for p in self._procs if p.state != "dead")
        return FaaSStats(self._cold, self._warm, alive, self._peak)

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_poke)

    def _on_poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._client is not None:
            # Interrupts a BLPOP in progress so new queues or closing take effect now.
            self._background(self._client.rpush(self._control, b"poke"))

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the dispatcher (its own thread and event loop) -------------------------------------
    def _thread_main(self) -> None:
        try:
            eventloop.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = connect(self.redis_url)
        await self._client.ping()
        self._ready.set()
        sweeper = asyncio.create_task(self._sweep())
        try:
            while not self._closing:
                try:
                    await self._dispatch_one()
                except Exception:
                    # One bad entry or a failed spawn must not stop the platform.
                    log.exception("LocalFaaS: dispatch failed")
                    await asyncio.sleep(0.1)
        finally:
            sweeper.cancel()
            await self._shutdown()
            with contextlib.suppress(Exception):
                await self._client.delete(self._control)
            await self._client.aclose()

    def _running(self) -> int:
        return sum(1 for p in self._procs if p.state == "busy")

    def _can_take(self) -> bool:
        if self._running() >= self.max_running:
            return False
        alive = sum(1 for p in self._procs if p.state != "dead")
        return alive < self.max_processes or any(p.state == "idle" for p in self._procs)

    async def _dispatch_one(self) -> None:
        assert self._wake is not None and self._client is not None
        if not self._memories or not self._can_take():
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MAX_BLOCK_S)
            return
        memories = sorted(self._memories)
        # Start the BLPOP at a different size each time: the first non-empty key wins.
        self._turn = (self._turn + 1) % len(memories)
        memories = memories[self._turn:] + memories[:self._turn]
        queues = [pool_queue(self.pool, m) for m in memories]
        try:
            popped: Any = await self._client.blpop([self._control, *queues],
                                                   timeout=MAX_BLOCK_S)
        except Exception as exc:
            log.warning("LocalFaaS: Redis unreachable (%s); retrying", exc)
            await asyncio.sleep(MAX_BLOCK_S)
            return
        if popped is None:
            return
        queue, entry = popped[0].decode(), bytes(popped[1])
        if queue == self._control:
            return
        await self._dispatch(queue, entry)

    async def _dispatch(self, queue: str, entry: bytes) -> None:
        memory = queue_memory(queue)
        idle = [p for p in self._procs if p.state == "idle" and p.memory == memory]
        cold = not idle
        if idle:
            proc = max(idle, key=lambda p: p.idle_since)  # most recent: the others may expire
        else:
            alive = [p for p in self._procs if p.state != "dead"]
            victims = [p for p in alive if p.state == "idle"]
            if len(alive) >= self.max_processes and victims:
                min(victims, key=lambda p: p.idle_since).stop()
            try:
                proc = await self._spawn(memory)
            except OSError as exc:
                log.error("LocalFaaS: cannot start a worker process: %s", exc)
                await self._client_push_back(queue, entry)
                await asyncio.sleep(MAX_BLOCK_S)
                return
        proc.state, proc.in_flight, proc.queue = "busy", entry, queue
        try:
            proc.send(dispatch_frame(cold, time.time() * 1000.0, entry))
        except (OSError, RuntimeError):
            await self._lost(proc)
            return
        if cold:
            self._cold += 1
        else:
            self._warm += 1

    async def _spawn(self, memory: int) -> _Proc:
        env = dict(os.environ)
        # Workers import task code the way this process does (same machine, same code).
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        # A FaaS sandbox runs one task at a time: BLAS thread pools in every worker would
        # oversubscribe the machine (a 0.15 ms block product took ~60 ms without this).
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        # Secrets stay off the command line, which every user sees (ps): the URL and its
        # password go in the environment, the key through the stdin pipe.
        env[URL_ENV] = self.redis_url
        env.pop(KEY_ENV, None)
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "faasplan", "worker", "--emulated",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=env, start_new_session=True, limit=2**20)
        handle = _Proc(proc, memory)
        handle.send(self._key)
        self._procs.append(handle)
        self._peak = max(self._peak, sum(1 for p in self._procs if p.state != "dead"))
        self._background(self._watch(handle))
        return handle

    async def _watch(self, handle: _Proc) -> None:
        assert handle.proc.stdout is not None and self._wake is not None
        while (frame := await read_frame(handle.proc.stdout)) is not None:
            if frame == b"D":
                handle.state, handle.in_flight = "idle", None
                handle.idle_since = time.monotonic()
            elif frame == b"B" and handle.state == "busy":
                handle.state = "blocked"
            elif frame == b"U" and handle.state == "blocked":
                handle.state = "busy"
            self._wake.set()
        await self._lost(handle)

    async def _lost(self, handle: _Proc) -> None:
        if handle.state == "dead":
            return
        was_stopping = handle.state == "stopping"
        handle.state = "dead"
        with contextlib.suppress(ProcessLookupError):
            await handle.proc.wait()
        self._procs.remove(handle)
        if handle.in_flight is not None and not was_stopping:
            # Died before it could say "done": if it never claimed the invocation nobody
            # else will know it exists; a duplicate of a claimed one is dropped on claim.
            log.warning("LocalFaaS: worker process %s (%d MB) exited with code %s while busy",
                        handle.proc.pid, handle.memory, handle.proc.returncode)
            await self._client_push_back(handle.queue, handle.in_flight)
        if self._wake is not None:
            self._wake.set()

    async def _client_push_back(self, queue: str, entry: bytes) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.lpush(queue, entry)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.keep_alive_s / 4)))
            now = time.monotonic()
            for p in self._procs:
                if p.state == "idle" and now - p.idle_since > self.keep_alive_s:
                    p.stop()

    async def _shutdown(self, timeout_s: float = 10.0) -> None:
        for p in list(self._procs):
            if p.state == "idle":
                p.stop()
        deadline = time.monotonic() + timeout_s
        while any(p.state in ("busy", "blocked") for p in self._procs):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        for p in list(self._procs):
            p.stop()
        for p in list(self._procs):
            try:
                await asyncio.wait_for(p.proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.kill()
                await p.proc.wait()
