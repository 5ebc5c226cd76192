"""The client: run a workflow under a plan on Redis and wait for its result.

:func:`run` stores the run's manifest, DAG parts and large literals once, pushes the
initial invocations, then waits on the run's event list while a supervisor watches the
invocations' leases. It never waits forever: a task error, a lost worker beyond
``max_retries``, a tampered payload, missing requirements, lost Redis state and the
overall ``timeout_s`` all end the run with an exception naming the task(s) concerned.

What retries assume: re-running a task is harmless apart from its output. The first
stored output of a task is final (``SET NX``; a result carried inside an invocation is
stored first), and a retry that re-executes a task continues with that stored value, so
every consumer sees one version even of a non-deterministic task. Every write of a worker
carries its invocation's attempt and the run instance's epoch, and the scripts refuse a
stale one: a worker paused past its lease stops at its next write. Side effects of task
code (files, services) may still happen more than once; a task's outputs computed by an
attempt that died before storing them may differ from the retry's.

A run id is reserved for one run instance: its keys still in Redis (a run going on, one
kept with ``keep_data=True``, or one whose client died) refuse the run unless
``replace=True``, and sealed payloads are bound to the instance, so nothing of an earlier
run with the same id authenticates. Every key expires after ``RuntimeConfig.key_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError

from faasplan.runtime import eventloop
from faasplan.runtime.driver import ROW_FIELDS
from faasplan.runtime.embedded import EmbeddedRedis
from faasplan.runtime.errors import (
    MissingRequirementsError,
    PayloadAuthError,
    RedisAuthError,
    RedisOutOfMemoryError,
    RedisUnavailableError,
    RemoteTaskError,
    RunError,
    RunIdInUseError,
    RunStateLostError,
    RunTimeoutError,
    WorkerFailedError,
    WorkerLostError,
)
from faasplan.runtime.events import LogStream
from faasplan.runtime.faas import LocalFaaS
from faasplan.runtime.invoking import InlineCache, enqueue_many, inline_blob
from faasplan.runtime.keys import RUNS_KEY, RunKeys, check_ids, pool_pattern
from faasplan.runtime.manifest import (
    PreparedRun,
    QueuedInvocation,
    invocation_id,
    now_ms,
    pack_manifest,
    payload_context,
    planner_name,
    prepare_run,
    reference_entry,
    resolve_placements,
    seal_invocation,
)
from faasplan.runtime.redisio import (
    CONNECTION_ERRORS,
    Scripts,
    connect,
    get_stored,
    is_out_of_memory,
)
from faasplan.runtime.runstate import server_max_bulk
from faasplan.runtime.security import Signer, check_redis_url, new_key, parse_key, redact
from faasplan.runtime.workerproc import event_context
from faasplan.worker import WorkerOptions, dag_parts_stored, initial_invocations, output_key
from faasplan.worker.log import CLIENT, Event, invoke_events
from faasplan.workflow import Workflow
from faasplan.workflow.codec import encode_parts

if TYPE_CHECKING:
    import pandas as pd

    from faasplan.predictors.metrics import MetricsRecord
    from faasplan.trace import Trace


log = logging.getLogger("faasplan.runtime.client")

FIRST_PUSH = 8
"""Initial invocations in the client's first push; each further push doubles, up to
:data:`MAX_PUSH` (the first workers start before every inline subDAG is encoded)."""
MAX_PUSH = 256
"""Initial invocations pushed at most in one round trip."""
EVENT_BATCH_S = 0.002
"""Least time between two reads of the run's events while they keep coming: those that
arrive meanwhile come in one reply, instead of a wake-up and two round trips each (the
client shares the CPUs with the workers and Redis). It delays learning of the end by at
most this much."""


@dataclass(frozen=True)
class Progress:
    """Passed to the ``progress`` callback each time a task finishes executing."""

    done: int
    total: int
    per_worker: Mapping[str, int]
    task: str
    worker: str


@dataclass(frozen=True)
class RuntimeConfig:
    """Knobs of the runtime (defaults suit a laptop).

    ``lease_ms``: a worker silent this long is taken for dead (its heartbeat process
    renews the lease every third). ``stream_chunk_bytes``: chunk size of streamed
    outputs. ``poll_s``: supervisor period. ``drain_s``: after the sinks are done, how
    long to wait for the other invocations to report (trace rows).
    ``max_running``/``max_processes``/``keep_alive_s`` configure the private
    :class:`~faasplan.runtime.LocalFaaS` started when no invoker is given.
    ``outage_s``: how long the client waits out an unreachable Redis (reconnecting with
    bounded back-off) before failing with :class:`~faasplan.runtime.errors.RedisUnavailableError`.
    ``key_ttl_s``: every key of a run expires after this, as a last resort against keys
    left by a client that died (``None``: no expiry); it must exceed ``timeout_s``, and
    ``keep_data=True`` keeps a run's keys this long.
    """

    lease_ms: int = 3000
    stream_chunk_bytes: int = 256 * 1024
    poll_s: float = 0.1
    drain_s: float = 5.0
    max_running: int | None = None
    max_processes: int = 64
    keep_alive_s: float = 60.0
    outage_s: float = 10.0
    key_ttl_s: float | None = 86400.0

    def __post_init__(self) -> None:
        if self.lease_ms < 100 or self.stream_chunk_bytes < 1 or self.poll_s <= 0:
            raise ValueError(f"RuntimeConfig: lease_ms >= 100, stream_chunk_bytes >= 1 and "
                             f"poll_s > 0 required, got {self}")
        if not self.outage_s > 0:
            raise ValueError(f"RuntimeConfig: outage_s must be > 0, got {self.outage_s!r}")
        if self.key_ttl_s is not None and not self.key_ttl_s >= 1:
            raise ValueError(f"RuntimeConfig: key_ttl_s must be >= 1 s or None, got "
                             f"{self.key_ttl_s!r}")

    @property
    def key_ttl_ms(self) -> int:
        """``key_ttl_s`` in ms for the scripts (0: no expiry)."""
        return 0 if self.key_ttl_s is None else int(self.key_ttl_s * 1000)


@dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run`.

    ``result`` is the sink's value (a list in ``workflow.sinks`` order for several sinks);
    ``trace`` has the simulator's columns, measured; ``retries`` counts invocations put
    back after a worker died; ``redis_net_bytes`` is the server's network traffic during
    the run (exact on a private server, an upper bound on a shared one).
    """

    result: Any
    run_id: str
    trace: Trace
    planner: str
    retries: int = 0
    redis_net_bytes: int = 0
    per_worker: Mapping[str, int] = field(default_factory=dict)

    @property
    def makespan_ms(self) -> float:
        """From the first invocation pushed to the last sink's output stored."""
        return self.trace.makespan_ms

    def records(self) -> list[MetricsRecord]:
        """One metrics record per executed task (real exec, transfer and start-up times)."""
        return self.trace.metrics(self.run_id, self.planner)

    def metrics(self) -> pd.DataFrame:
        """:meth:`records` as a metrics DataFrame (see :mod:`faasplan.predictors.metrics`)."""
        from faasplan.predictors.metrics import records_to_frame

        return records_to_frame(self.records())


Invoker = LocalFaaS | Literal["external"] | None


def run(workflow: Workflow, plan: Any = None, redis: str | None = None, *,
        hmac_key: bytes | str | None = None, timeout_s: float = 600.0, max_retries: int = 1,
        keep_data: bool = False, progress: Callable[[Progress], None] | None = None,
        seed: int = 0, options: WorkerOptions | None = None, invoker: Invoker = None,
        config: RuntimeConfig | None = None, run_id: str | None = None,
        metrics_path: str | os.PathLike[str] | None = None, replace: bool = False
        ) -> RunResult:
    """Execute ``workflow`` under ``plan`` on Redis with FaaS-style worker processes.

    Parameters
    ----------
    workflow : Workflow
        What to run.
    plan : None, mapping task id -> Placement, or object with ``.placements``
        ``None`` runs every task on flexible 1024 MB workers.
    redis : str, optional
        Redis URL. ``None`` starts a private ``redis-server`` on a free loopback port
        (random password, temporary directory) for this run only. A non-loopback URL
        needs a password.
    hmac_key : bytes or hex str, optional
        Key authenticating every payload; workers started elsewhere need the same key
        (``FAASPLAN_HMAC_KEY``). ``None``: a fresh key, so only this run's own worker
        processes can serve it.
    timeout_s : float
        The run fails with :class:`RunTimeoutError` (listing unfinished tasks) after this.
    max_retries : int
        How often an invocation whose worker died is retried before
        :class:`WorkerLostError`.
    keep_data : bool
        Keep the run's keys in Redis (outputs, DAG, events) instead of deleting them.
    progress : callable, optional
        Called with a :class:`Progress` after each task, in the calling thread.
    seed : int
        Seeds the jitter of the client's reconnect backoff; recorded in the trace.
    options : WorkerOptions, optional
        Inline-DAG and carry thresholds (default: ``plan.options`` if it has one).
    invoker : LocalFaaS, "external" or None
        ``None`` starts a private :class:`LocalFaaS` for the run; a running ``LocalFaaS``
        (same key) is shared between runs, keeping its processes warm; ``"external"``
        relies on workers started with ``faasplan worker``.
    config : RuntimeConfig, optional
        Lease, streaming and emulator settings.
    run_id : str, optional
        Names the run's keys (default: a fresh unique id). A run id whose keys are still
        in Redis (a run going on, kept with ``keep_data=True``, or left by a client that
        died) is refused with :class:`~faasplan.runtime.errors.RunIdInUseError`.
    replace : bool
        Reuse ``run_id`` even so: the old run's keys are deleted first (a client still
        running it then fails with :class:`RunStateLostError`). Payloads are bound to the
        run instance either way, so nothing of an old run is ever taken for this one's.
    metrics_path : path, optional
        Append the run's metrics records to this Parquet file
        (:func:`faasplan.predictors.metrics.save_metrics`).

    Returns
    -------
    RunResult

    Raises
    ------
    RemoteTaskError, WorkerLostError, PayloadAuthError, MissingRequirementsError,
    RunStateLostError, WorkerFailedError, RunTimeoutError, RunIdInUseError,
    RedisAuthError, RedisUnavailableError, RedisOutOfMemoryError
        All subclasses of :class:`RunError`.
    """
    coro = run_async(workflow, plan, redis, hmac_key=hmac_key, timeout_s=timeout_s,
                     max_retries=max_retries, keep_data=keep_data, progress=progress,
                     seed=seed, options=options, invoker=invoker, config=config, run_id=run_id,
                     metrics_path=metrics_path, replace=replace)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return eventloop.run(coro)
    # Called from a running event loop (a notebook): run on a thread with its own loop.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="faasplan-run") as pool:
        return pool.submit(eventloop.run, coro).result()


async def run_async(workflow: Workflow, plan: Any = None, redis: str | None = None, *,
                    hmac_key: bytes | str | None = None, timeout_s: float = 600.0,
                    max_retries: int = 1, keep_data: bool = False,
                    progress: Callable[[Progress], None] | None = None, seed: int = 0,
                    options: WorkerOptions | None = None, invoker: Invoker = None,
                    config: RuntimeConfig | None = None, run_id: str | None = None,
                    metrics_path: str | os.PathLike[str] | None = None,
                    replace: bool = False) -> RunResult:
    """:func:`run` as a coroutine."""
    if not isinstance(workflow, Workflow):
        raise TypeError(f"run() takes a Workflow, got {type(workflow).__name__}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if invoker is not None and invoker != "external" and not isinstance(invoker, LocalFaaS):
        raise TypeError(f"invoker must be None, 'external' or a LocalFaaS, got {invoker!r}")
    cfg = config or RuntimeConfig()
    if cfg.key_ttl_s is not None and timeout_s > cfg.key_ttl_s:
        raise ValueError(f"timeout_s ({timeout_s:g} s) exceeds RuntimeConfig.key_ttl_s "
                         f"({cfg.key_ttl_s:g} s): the run's keys would expire while it runs; "
                         "raise key_ttl_s (or set it to None)")
    opts = options or getattr(plan, "options", None)
    if opts is not None and not isinstance(opts, WorkerOptions):
        raise TypeError(f"options must be a WorkerOptions, got {type(opts).__name__}")
    placements = resolve_placements(workflow, plan)
    key = parse_key(hmac_key) if hmac_key is not None else new_key()
    signer = Signer(key)
    if isinstance(invoker, LocalFaaS) and invoker.pool != signer.pool:
        raise ValueError("the LocalFaaS given as invoker was started with another HMAC key; "
                         "pass the same hmac_key to run()")
    rid = (run_id if run_id is not None
           else f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}")
    check_ids(rid, workflow.topological_order)
    prepared = prepare_run(workflow, placements, run_id=rid, planner=planner_name(plan),
                           options=opts or WorkerOptions(), lease_ms=cfg.lease_ms,
                           stream_chunk_bytes=cfg.stream_chunk_bytes,
                           epoch=secrets.token_hex(8), key_ttl_ms=cfg.key_ttl_ms)
    if isinstance(invoker, LocalFaaS):
        prepared.spec.check_concurrency(invoker.max_processes, "the emulator's max_processes")
    elif invoker is None:
        prepared.spec.check_concurrency(cfg.max_processes,
                                        "RuntimeConfig.max_processes of the local emulator")
    outcome = {"ok": False}
    async with contextlib.AsyncExitStack() as stack:
        if redis is None:
            server = await asyncio.to_thread(EmbeddedRedis().start)
            stack.callback(server.stop)
            url = server.url
        else:
            check_redis_url(redis)
            url = redis
        # Before any worker starts: a wrong password or a dead server fails here, fast.
        await _preflight(url, min(timeout_s, cfg.outage_s), rid)
        faas: LocalFaaS | None = invoker if isinstance(invoker, LocalFaaS) else None
        if invoker is None:
            faas = LocalFaaS(url, key, max_running=cfg.max_running,
                             max_processes=cfg.max_processes, keep_alive_s=cfg.keep_alive_s)
            await asyncio.to_thread(faas.start)
            # A failed run's invocations still in flight are of no use: stop them soon.
            stack.push_async_callback(lambda: asyncio.to_thread(
                faas.close, 10.0 if outcome["ok"] else 2.0))
        # Few retries per command: the session waits out outages itself (outage_s).
        client = connect(url, retries=3)
        stack.push_async_callback(client.aclose)
        session = _Session(client, url, signer, prepared, faas, cfg, timeout_s=timeout_s,
                           max_retries=max_retries, keep_data=keep_data, progress=progress,
                           seed=seed, private_pool=hmac_key is None,
                           predicted_ms=_predicted_ms(plan), replace=replace,
                           prediction=predicted_tasks(plan))
        result = await session.execute()
        outcome["ok"] = True
    if metrics_path is not None:
        from faasplan.predictors.metrics import save_metrics

        save_metrics(result.records(), metrics_path)
    return result


class _Session:
    """One run seen from the client."""

    def __init__(self, client: aioredis.Redis, url: str, signer: Signer, prepared: PreparedRun,
                 faas: LocalFaaS | None, cfg: RuntimeConfig, *, timeout_s: float,
                 max_retries: int, keep_data: bool,
                 progress: Callable[[Progress], None] | None, seed: int,
                 private_pool: bool, predicted_ms: float | None = None,
                 replace: bool = False, prediction: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.url = url
        self.signer = signer
        self.prepared = prepared
        self.manifest = prepared.manifest
        self.run_id = prepared.manifest.run_id
        self.keys = RunKeys(self.run_id)
        self.scripts = Scripts(client)
        self.faas = faas
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.keep_data = keep_data
        self.progress = progress
        self.seed = seed
        self.private_pool = private_pool
        self.rng = np.random.default_rng(seed)
        self.done: dict[str, str] = {}
        self.per_worker: dict[str, int] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self._client_log: list[Event] = []
        self._logs: dict[str, tuple[int, int, list[Event]]] = {}
        self.predicted_ms = predicted_ms
        self.prediction = prediction
        self.stream = LogStream(client, self.keys.log, create=True)
        self.invocations: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.requeued: set[str] = set()
        self.sinks_left = set(self.manifest.sinks)
        self.retries = 0
        self.client_bytes = 0
        self.t0 = 0.0
        self.replace = replace
        self.reserved = False
        self.ttl_ms = cfg.key_ttl_ms
        self._next_pop = 0.0  # loop time before which the events are not read again

    async def execute(self) -> RunResult:
        failed = True
        try:
            net_before = await self._net_bytes()
            await self._store_run()
            if self.faas is not None:
                self.faas.serve({p.placement.memory_mb for p in self.prepared.spec.tasks.values()})
            await self._start()
            await self._wait()
            result = await self._results()
            net = await self._net_bytes() - net_before
            failed = False
        except AuthenticationError as exc:
            raise RedisAuthError(redact(self.url), str(exc), run_id=self.run_id) from exc
        except CONNECTION_ERRORS as exc:
            raise RedisUnavailableError(redact(self.url), f"{type(exc).__name__}: {exc}",
                                        run_id=self.run_id) from exc
        except RedisError as exc:
            if is_out_of_memory(exc):
                raise await self._out_of_memory() from exc
            raise
        finally:
            if self.reserved:
                await self._cleanup(failed)
        from faasplan.runtime.trace import build_real_trace

        t0 = self.t0
        log = tuple(ev._replace(start=ev.start - t0, end=ev.end - t0) for ev in self.log)
        trace = build_real_trace(
            self.prepared.spec, self.rows, self.invocations.values(), self.t0,
            workflow_hash=self.manifest.workflow_hash, workflow_name=self.manifest.workflow_name,
            seed=self.seed, client_bytes=self.client_bytes, log=log)
        return RunResult(result, self.run_id, trace, self.manifest.planner, self.retries,
                         net, dict(self.per_worker))

    # -- setting up ----------------------------------------------------------------------
    async def _store_run(self) -> None:
        # The run starts with the client's first action, as in the simulator: storing the
        # DAG and the large literals is part of the makespan. The DAG is stored as its
        # content-addressed parts, each sealed under its own key, when some invocation may
        # go by reference (as the simulator's client does).
        self.t0 = now_ms()
        await self._reserve()
        k, s = self.keys, self.signer
        items = {k.manifest: pack_manifest(s, self.manifest)}
        for part, data in self._dag_parts().items():
            items[k.data(part)] = s.seal(self._context(part), data)
        for lit_id, data in self.prepared.encoded.payloads.items():
            items[k.data(lit_id)] = s.seal(self._context(lit_id), data)
        limit = await server_max_bulk(self.client)
        for key, value in items.items():
            if len(value) > limit:
                raise ValueError(f"{key} is {len(value):,} bytes, above the Redis server's "
                                 f"proto-max-bulk-len of {limit:,} bytes; pass the large "
                                 "input as a smaller value or raise the server's limit")
        self.client_bytes += sum(len(v) for v in items.values())
        px = self.ttl_ms or None
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=px)
            # What a live view needs to draw the run (plain JSON: it decides nothing).
            pipe.set(self.keys.info, run_info_json(self.prepared, self.predicted_ms,
                                                   self.prediction), px=px)
            pipe.zadd(RUNS_KEY, {self.run_id: now_ms()})
            await pipe.execute()

    def _context(self, key: str) -> str:
        return payload_context(self.run_id, self.manifest.epoch, key)

    def _dag_parts(self) -> Mapping[str, bytes]:
        """The DAG parts to store: every one the spec names, or none if no invocation
        of the run can go by reference."""
        spec = self.prepared.spec
        if not dag_parts_stored(spec):
            return {}
        parts = self.prepared.parts or encode_parts(self.prepared.workflow)
        wanted = {key for tid in spec.order for key, _ in spec.task_parts(tid)}
        missing = wanted - set(parts.blobs)
        if missing:
            raise ValueError(f"the run's spec names DAG parts its encoding lacks "
                             f"({sorted(missing)[:3]}); prepare the run again")
        return {key: parts.blobs[key] for key in wanted}

    async def _reserve(self) -> None:
        """Take the run id for this run instance, or refuse it while another holds it."""
        k = self.keys
        checked = [k.manifest, k.info, k.inv_state, k.inv_items, k.events, k.log, k.abort,
                   k.owners]
        if self.replace:
            await _unlink_all(self.client, [*checked, k.inv_attempts])
            await _unlink_matching(self.client, k.pattern)
            await self.client.zrem(RUNS_KEY, self.run_id)
        found: Any = await self.scripts.reserve(
            keys=[k.inv_attempts, RUNS_KEY, *checked],
            args=[self.manifest.epoch, self.ttl_ms, self.run_id])
        if found:
            raise RunIdInUseError(self.run_id, [bytes(f).decode() for f in found])
        self.reserved = True

    async def _start(self) -> None:
        """Push the initial invocations in growing batches, each as soon as the subDAGs
        its invocations carry inline are encoded: the first workers start while the
        client still encodes the rest. Each function's code is pickled once per run."""
        spec, wf = self.prepared.spec, self.prepared.workflow
        invocations = initial_invocations(spec)
        cache = InlineCache()
        size, done = FIRST_PUSH, 0
        while done < len(invocations):
            chunk = invocations[done:done + size]
            done += len(chunk)
            size = min(2 * size, MAX_PUSH)
            blobs = [inline_blob([wf], spec, inv, cache) if inv.inline_dag else None
                     for inv in chunk]
            pushed = now_ms()
            batch = []
            for inv, blob in zip(chunk, blobs, strict=True):
                queued = QueuedInvocation(self.run_id, invocation_id(inv), inv, blob, pushed,
                                          self.manifest.epoch)
                entry = seal_invocation(self.signer, queued)
                self.client_bytes += len(entry)
                batch.append((queued, entry))
            for inv in chunk:
                for ev in invoke_events(CLIENT, inv, pushed, pushed):
                    self._client_log.append(ev)
                    self.stream.put(ev)
            # The log exists (first batch), and shows each invocation, before any worker
            # of the batch writes to it.
            await self.stream.close()
            await enqueue_many(self.client, self.keys, self.signer.pool, batch,
                               ttl_ms=self.ttl_ms, expire=(self.keys.log,))

    # -- waiting -------------------------------------------------------------------------
    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        next_tick = 0.0
        drain_until: float | None = None
        backoff = 0.05
        last_ok = loop.time()
        while True:
            now = loop.time()
            if now > deadline:
                raise RunTimeoutError(self.timeout_s, self._unfinished(), run_id=self.run_id)
            try:
                for raw in await self._pop_events(min(self.cfg.poll_s, deadline - now)):
                    self._handle(self.signer.loads(event_context(self.run_id), raw))
                if drain_until is None and not self.sinks_left:
                    drain_until, next_tick = now + self.cfg.drain_s, 0.0
                if drain_until is not None and not self.running and not self.requeued:
                    # Sinks done and every claimed invocation has reported (its rows come
                    # with its "inv" event): no need to wait for the next tick.
                    return
                if now >= next_tick:
                    next_tick = now + self.cfg.poll_s
                    all_done = await self._supervise()
                    if drain_until is not None and (all_done or now > drain_until):
                        return
                backoff, last_ok = 0.05, loop.time()
            except AuthenticationError:
                raise
            except CONNECTION_ERRORS as exc:
                # Beyond the client's own retries: wait out a short outage with bounded
                # back-off; once back, the supervisor tells a restarted (empty) server
                # from a hiccup. A longer outage fails now, not at the deadline.
                down = loop.time() - last_ok
                if down > self.cfg.outage_s:
                    raise RedisUnavailableError(redact(self.url), f"{type(exc).__name__}: {exc}",
                                                down, run_id=self.run_id) from exc
                await asyncio.sleep(min(backoff * (1.0 + self.rng.random()),
                                        max(0.01, self.cfg.outage_s - down)))
                backoff = min(1.0, backoff * 2)

    async def _pop_events(self, timeout: float) -> list[bytes]:
        loop = asyncio.get_running_loop()
        early = self._next_pop - loop.time()
        if early > 0:
            await asyncio.sleep(early)  # let the events of the next few ms gather
        self._next_pop = loop.time() + EVENT_BATCH_S
        got: Any = await self.client.lpop(self.keys.events, 1000)
        if got:
            return [bytes(r) for r in got]
        first: Any = await self.client.blpop([self.keys.events], timeout=max(0.01, timeout))
        if first is None:
            return []
        self._next_pop = loop.time() + EVENT_BATCH_S
        return [bytes(first[1])]

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "done":
            _, task, worker = event
            if task not in self.done:
                self.done[task] = worker
                self.per_worker[worker] = self.per_worker.get(worker, 0) + 1
                if self.progress is not None:
                    self.progress(Progress(len(self.done), len(self.prepared.spec.order),
                                           dict(self.per_worker), task, worker))
        elif kind == "claim":
            self.running.add(event[1])
            self.requeued.discard(event[1])
        elif kind == "inv":
            self.running.discard(event[1])
        elif kind == "sink":
            self.sinks_left.discard(event[1])
        elif kind == "rows":
            _, rows, inv = event
            for row in rows:
                self.rows.setdefault(row[0], dict(zip(ROW_FIELDS, row, strict=True)))
            self.invocations[f"{inv['worker']}#{inv['attempt']}#{inv['begin']}"] = inv
            self._add_log(str(inv["worker"]), int(inv["attempt"]),
                          [Event(*e) for e in inv.get("log", ())])
        elif kind == "fail":
            raise self._failure(event[1], event[2])

    def _add_log(self, label: str, attempt: int, events: list[Event]) -> None:
        """Keep, per invocation, the decision log of the attempt that ran the most tasks.

        A worker paused past its lease may still report after its retry did; the attempt
        that got furthest (the later one on a tie) stands for the invocation.
        """
        ran = sum(e.kind == "execute" for e in events)
        best = self._logs.get(label)
        if best is None or (ran, attempt) >= best[:2]:
            self._logs[label] = (ran, attempt, events)

    @property
    def log(self) -> list[Event]:
        """The run's decision log: the client's events, then each invocation's."""
        out = list(self._client_log)
        for _, _, events in self._logs.values():
            out.extend(events)
        return out

    def _failure(self, kind: str, info: dict[str, Any]) -> RunError:
        rid = self.run_id
        if kind == "task":
            return RemoteTaskError(info["task"], info["function"], info["exc_type"],
                                   info["message"], info["traceback"], run_id=rid)
        if kind == "auth":
            return PayloadAuthError(info["context"], "rejected by a worker", run_id=rid)
        if kind == "requirements":
            return MissingRequirementsError(info["worker"], info["missing"], run_id=rid)
        if kind == "lost":
            return RunStateLostError(info["message"], run_id=rid)
        if kind == "oom":
            return RedisOutOfMemoryError(redact(self.url), info.get("used", "?"),
                                         info.get("limit", "?"), run_id=rid)
        return WorkerFailedError(info.get("invocation", "?"), info.get("exc_type", "?"),
                                 info.get("message", ""), info.get("traceback", ""), run_id=rid)

    async def _supervise(self) -> bool:
        """Check the run's state is still there, retry invocations of dead workers.

        Returns whether no invocation is running or waiting to be retried.
        """
        running = sorted(self.running)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.manifest)
            for inv in running:
                pipe.exists(self.keys.lease(inv))
            present, *alive = await pipe.execute()
        if not present:
            raise RunStateLostError(
                f"Redis at {redact(self.url)} no longer holds this run's state (the server "
                "was restarted without persistence, or flushed); run the workflow again. "
                f"Unfinished tasks: {self._unfinished()[:20]}", run_id=self.run_id)
        for inv, ok in zip(running, alive, strict=True):
            if not ok:
                await self._retry(inv)
        return not self.running and not self.requeued

    async def _retry(self, inv: str) -> None:
        queue: Any = await self.client.hget(self.keys.inv_queue, inv)
        code, attempts = await self.scripts.requeue(
            keys=[self.keys.inv_state, self.keys.lease(inv), self.keys.inv_items,
                  self.keys.inv_attempts],
            args=[inv, queue or b"", self.max_retries,
                  reference_entry(self.run_id, self.manifest.epoch, inv)])
        if code == 2:
            if await self._memory_full():
                # Its worker could not even report: Redis refused its writes.
                raise await self._out_of_memory()
            raise WorkerLostError(inv, int(attempts), self._unfinished(), run_id=self.run_id)
        if code == 3:
            raise WorkerFailedError(inv, "KeyError", "its queue entry is missing from Redis",
                                    "", run_id=self.run_id)
        if code == 1:
            self.retries += 1
            self.running.discard(inv)
            self.requeued.add(inv)

    def _unfinished(self) -> list[str]:
        return [t for t in self.prepared.spec.order if t not in self.done]

    # -- finishing -----------------------------------------------------------------------
    async def _results(self) -> Any:
        values = []
        for sink in self.manifest.sinks:
            key = output_key(sink)
            raw = await get_stored(self.client, self.keys.data(key), self.keys.stream(key))
            if raw is None:
                raise RunStateLostError(f"the output of sink {sink!r} is missing from Redis",
                                        run_id=self.run_id)
            values.append(self.signer.loads(self._context(key), raw))
        return values[0] if len(values) == 1 else values

    async def _net_bytes(self) -> int:
        info: Any = await self.client.info("stats")
        return int(info.get("total_net_input_bytes", 0)) + \
            int(info.get("total_net_output_bytes", 0))

    async def _cleanup(self, failed: bool) -> None:
        """Delete the run's keys; every step is tried even if an earlier one failed.

        Deleting needs no memory, so it works under ``maxmemory`` too; once the manifest
        is gone every worker script refuses to write, so nothing comes back.
        """
        steps: list[Callable[[], Awaitable[Any]]]
        if self.keep_data:
            if not failed:
                return
            steps = [lambda: self.client.set(self.keys.abort, b"1", px=self.ttl_ms or None)]
        else:
            k = self.keys
            steps = [
                self.stream.close,
                # First the manifest: every worker still running stops at its next write.
                lambda: self.client.unlink(k.manifest, k.inv_attempts),
                lambda: self.client.zrem(RUNS_KEY, self.run_id),
                # The keys it can name, then what a pattern of the escaped run id finds.
                lambda: _unlink_all(self.client, k.known(
                    self.prepared.spec.order, self._dag_parts())),
                lambda: _unlink_matching(self.client, k.pattern),
            ]
            if self.private_pool:
                steps.append(lambda: _unlink_matching(self.client,
                                                      pool_pattern(self.signer.pool)))
        for step in steps:
            try:
                await asyncio.wait_for(step(), self.cfg.outage_s)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("run %s: clean-up step failed (%s); the keys expire with "
                            "RuntimeConfig.key_ttl_s", self.run_id, exc)
                if isinstance(exc, (*CONNECTION_ERRORS, TimeoutError)):
                    return  # Redis is away: the other steps would wait for it too

    async def _memory_full(self) -> bool:
        """Whether the server is within 10 % of its ``maxmemory`` (0: no limit)."""
        try:
            info: Any = await self.client.info("memory")
        except RedisError:
            return False
        limit = int(info.get("maxmemory", 0) or 0)
        return limit > 0 and int(info.get("used_memory", 0)) >= 0.9 * limit

    async def _out_of_memory(self) -> RunError:
        used, limit = "?", "?"
        with contextlib.suppress(RedisError, OSError):
            info: Any = await self.client.info("memory")
            used = str(info.get("used_memory_human", "?"))
            limit = str(info.get("maxmemory_human", "?"))
        return RedisOutOfMemoryError(redact(self.url), used, limit, run_id=self.run_id)


async def _unlink_all(client: aioredis.Redis, keys: list[str], batch: int = 1000) -> None:
    for i in range(0, len(keys), batch):
        await client.unlink(*keys[i:i + batch])


async def _unlink_matching(client: aioredis.Redis, pattern: str) -> None:
    """Unlink every key matching ``pattern``, which must be built from escaped names."""
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


_UNREACHABLE: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, TimeoutError, OSError)


async def _preflight(url: str, within_s: float, run_id: str) -> None:
    """Check that Redis at ``url`` answers and accepts the URL's credentials.

    Retries a refused connection with bounded back-off for up to ``within_s``; raises
    :class:`RedisAuthError` at once when authentication is required or refused, and
    :class:`RedisUnavailableError` when the server stays unreachable.
    """
    client = aioredis.Redis.from_url(url, socket_timeout=max(0.5, within_s),
                                     socket_connect_timeout=min(5.0, max(0.5, within_s)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    backoff = 0.05
    try:
        while True:
            try:
                await asyncio.wait_for(client.ping(), max(0.2, deadline - loop.time()))
                return
            except AuthenticationError as exc:
                raise RedisAuthError(redact(url), str(exc), run_id=run_id) from None
            except _UNREACHABLE as exc:
                if loop.time() + backoff > deadline:
                    raise RedisUnavailableError(redact(url), f"{type(exc).__name__}: {exc}",
                                                within_s, run_id=run_id) from None
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def _predicted_ms(plan: Any) -> float | None:
    value = getattr(plan, "predicted_makespan_ms", None)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def predicted_tasks(plan: Any) -> dict[str, Any] | None:
    """The plan's predicted trace per task, for a dashboard's plan-vs-actual view:
    ``{"makespan_ms", "source", "tasks": {task: [worker, start, exec start, exec end,
    end]}}`` in ms since the run's start; ``None`` for a plan without a predicted trace."""
    trace = getattr(plan, "predicted", None)
    table = getattr(trace, "tasks", None)
    makespan = _predicted_ms(plan)
    if table is None or makespan is None or not len(table):
        return None
    cols = ("task", "worker", "start_ms", "exec_start_ms", "exec_end_ms", "end_ms")
    if any(c not in table.columns for c in cols):
        return None
    rows = table.drop_duplicates("task")
    tasks = {str(r[0]): [str(r[1]), *(round(float(v), 3) for v in r[2:])]
             for r in zip(*(rows[c] for c in cols), strict=True)}
    return {"makespan_ms": makespan, "source": "plan", "tasks": tasks}


def run_info_json(prepared: PreparedRun, predicted_ms: float | None,
                  prediction: Mapping[str, Any] | None = None) -> str:
    """The run's ``info`` key: its tasks, edges and placements, and the plan's prediction
    (its makespan, and per task when :func:`predicted_tasks` gave one)."""
    spec, manifest = prepared.spec, prepared.manifest
    tasks = [{"id": t, "function": spec.tasks[t].function,
              "upstream": list(spec.tasks[t].upstream),
              "worker": spec.tasks[t].placement.worker,
              "memory_mb": spec.tasks[t].placement.memory_mb} for t in spec.order]
    info: dict[str, Any] = {"run_id": manifest.run_id, "workflow": manifest.workflow_name,
                            "planner": manifest.planner, "started_ms": now_ms(),
                            "tasks": tasks, "predicted_makespan_ms": predicted_ms}
    if prediction is not None:
        info["prediction"] = dict(prediction)
    return json.dumps(info)
