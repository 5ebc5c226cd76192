"""Run a plan on an existing Dask cluster: each FaaS sandbox invocation is a Dask task.

:class:`DaskInvoker` is the local emulator's dispatcher (:class:`~.faas.LocalFaaS`) with a
Dask cluster in place of its process pool. It pops invocations from the pool's queues in
Redis, as the emulator does, and submits one Dask task per invocation. In the Dask worker
process the task hands the queue entry to a sandbox, the same
:class:`~.workerproc.WorkerProcess` an emulated worker process runs, so the worker logic,
the storage (Redis) and the traces are those of every other faasplan run. It is the
second implementation of the invoker contract, :class:`faasplan.runtime.invoker.Invoker`.

* **Key and Redis URL.** They reach the Dask workers once, in a worker plugin registered
  under a name private to this invoker (the scheduler hands it to workers that join
  later); no task's arguments carry them and they are never on a command line. They
  travel over the cluster's own connections: use ``tls://`` (a ``distributed.Security``)
  when the scheduler is not on this host. The plugin is removed when the invoker closes.
* **Cold and warm.** A Dask worker process that already served an invocation of the run
  less than ``keep_alive_s`` ago starts the next one **warm**; its first one, or one after
  a longer pause, is **cold**. The sandbox keeps the run's manifest and DAG while warm.
* **Admission.** At most ``max_running`` invocations are in flight at once (default: the
  cluster's threads). An invocation holds its Dask thread from dispatch to its end, waiting
  for another worker's output included, so plans whose waiting workers could take every
  thread are refused before they start, as with the emulator.
* **Memory.** Nominal, as in the emulator; with ``memory_resource`` each invocation
  requests its memory size as that Dask resource, so only workers started with the
  resource (``dask worker --resources "MEMORY_MB=4096"``) run it, as many at once as fit.
* **Failures.** A task's exception reaches the client through Redis with its traceback,
  as in every run. A Dask worker that dies mid-invocation leaves its lease to expire: the
  client retries the invocation (``max_retries``), and Dask's own rerun of the dead task
  finds the invocation claimed and does nothing. Any other error of the Dask task (an
  import error on the worker, say) fails the run with the remote traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from typing import Any

import redis.asyncio as aioredis

from faasplan.runtime import eventloop
from faasplan.runtime.events import Outbox
from faasplan.runtime.faas import FaaSStats, LocalFaaS
from faasplan.runtime.keys import RunKeys, queue_memory
from faasplan.runtime.manifest import now_ms, parse_entry
from faasplan.runtime.redisio import connect
from faasplan.runtime.security import Signer, is_loopback_host, strict_mode
from faasplan.runtime.workerproc import WorkerProcess, event_context

try:
    import distributed
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:  # pragma: no cover - the dask extra is in the dev install
    raise ImportError("faasplan.runtime.DaskInvoker needs Dask distributed: "
                      "pip install 'faasplan[dask]'") from exc

log = logging.getLogger("faasplan.runtime.dask")

_KEEP_RUNS = 1024
"""Runs a Dask worker process remembers having served (for cold/warm), most recent kept."""


class DaskInvoker(LocalFaaS):
    """Invoker running faasplan sandboxes as tasks on an existing Dask cluster.

    Use it as a context manager (or :meth:`start`/:meth:`close`) and pass it to
    :func:`faasplan.run` with the same Redis URL and key::

        with DaskInvoker("tcp://scheduler:8786", url, key) as dask_invoker:
            result = faasplan.run(wf, plan, url, hmac_key=key, invoker=dask_invoker)

    Parameters
    ----------
    address_or_client : str, distributed.Client or a Dask cluster
        The scheduler's address, or a client or cluster object to take it (and its
        ``security``) from. The invoker opens its own asynchronous client; a client
        passed in is left open.
    redis_url : str
        Where the invocation queues and the run's data live; the Dask workers must reach
        it (an embedded server on loopback serves only a cluster on this host).
    hmac_key : bytes or str
        The key shared with the client (hex string accepted); it selects the pool.
    max_running : int, optional
        Invocations in flight at once; default, and at most, the cluster's threads when
        the invoker starts.
    keep_alive_s : float
        A Dask worker process that served the run within this long starts warm.
    memory_resource : str, optional
        Request each invocation's memory (MB) as this Dask resource.
    security : distributed.Security, optional
        TLS settings for an address given as a string (default: the Dask configuration's).
    connect_timeout_s : float
        How long to wait for the scheduler and for at least one worker.

    Raises
    ------
    ValueError
        A bad argument, or (at :meth:`start`) a cluster without workers.
    """

    def __init__(self, address_or_client: Any, redis_url: str, hmac_key: bytes | str, *,
                 max_running: int | None = None, keep_alive_s: float = 600.0,
                 memory_resource: str | None = None, security: Any = None,
                 connect_timeout_s: float = 20.0) -> None:
        if max_running is not None and max_running < 1:
            raise ValueError(f"DaskInvoker: max_running must be >= 1, got {max_running}")
        if keep_alive_s < 0:
            raise ValueError(f"DaskInvoker: keep_alive_s must be >= 0, got {keep_alive_s}")
        super().__init__(redis_url, hmac_key, max_running=1, max_processes=1,
                         keep_alive_s=keep_alive_s)
        self.address, cluster_security = _scheduler_of(address_or_client)
        self.security = security if security is not None else cluster_security
        self.memory_resource = memory_resource
        self.connect_timeout_s = connect_timeout_s
        self._wanted_running = max_running
        self._plugin = f"faasplan-{self.pool}-{uuid.uuid4().hex[:12]}"
        self._dask: distributed.Client | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._peak_inflight = 0
        self._workers_used: set[str] = set()
        _check_transport(self.address, self.security)

    def start(self) -> DaskInvoker:
        """Connect to the cluster, install the key on its workers, start dispatching.

        Raises
        ------
        RuntimeError
            The scheduler cannot be reached, or has no worker, within the timeouts.
        """
        if self._thread is not None:
            return self
        with contextlib.suppress(RuntimeError):  # reported below, with the address
            super().start()
        # Connecting and waiting for a worker may take longer than the emulator waits.
        self._ready.wait(2 * self.connect_timeout_s + 5.0)
        if self._error is not None or not self._ready.is_set():
            cause = self._error or TimeoutError(f"no answer in {2 * self.connect_timeout_s} s")
            self._closing = True
            raise RuntimeError(f"DaskInvoker could not start on {self.address}: "
                               f"{type(cause).__name__}: {cause}") from cause
        return self

    def __enter__(self) -> DaskInvoker:
        return self.start()

    @property
    def stats(self) -> FaaSStats:
        """Cold and warm starts so far; invocations in flight now and at most."""
        return FaaSStats(self._cold, self._warm, len(self._inflight), self._peak_inflight)

    @property
    def workers_used(self) -> frozenset[str]:
        """Addresses of the Dask workers that served at least one invocation."""
        return frozenset(self._workers_used)

    # -- on the dispatcher's event loop -----------------------------------------------------
    async def _main(self) -> None:
        self._dask = await distributed.Client(self.address, asynchronous=True,
                                              security=self.security, set_as_default=False,
                                              timeout=self.connect_timeout_s)
        try:
            waiting: Any = self._dask.wait_for_workers(1, timeout=self.connect_timeout_s)
            await waiting
            slots = sum((await self._dask.nthreads()).values())
            self.max_processes = slots
            self.max_running = min(self._wanted_running or slots, slots)
            plugin = _SandboxPlugin(self._plugin, self.redis_url, self._key, self.keep_alive_s)
            await self._dask.register_plugin(plugin, name=self._plugin)
            await super()._main()
        finally:
            with contextlib.suppress(Exception):
                await self._dask.unregister_worker_plugin(self._plugin)
            await self._dask.close()

    async def _sweep(self) -> None:
        # Sandboxes live in the Dask workers, which keep them; nothing expires here.
        await asyncio.Event().wait()

    def _can_take(self) -> bool:
        return len(self._inflight) < self.max_running

    async def _dispatch(self, queue: str, entry: bytes) -> None:
        assert self._dask is not None
        memory = queue_memory(queue)
        key = f"faasplan-invocation-{uuid.uuid4().hex}"
        resources = {self.memory_resource: memory} if self.memory_resource else None
        future = self._dask.submit(serve_invocation, self._plugin, entry, now_ms(), key=key,
                                   pure=False, resources=resources)
        self._inflight[key] = asyncio.create_task(self._await(key, future, entry))
        self._peak_inflight = max(self._peak_inflight, len(self._inflight))

    async def _await(self, key: str, future: Any, entry: bytes) -> None:
        assert self._wake is not None
        try:
            startup, worker = await future
            self._workers_used.add(worker)
            if startup == "cold":
                self._cold += 1
            else:
                self._warm += 1
        except asyncio.CancelledError:
            raise
        except distributed.KilledWorker:
            # The invocation's lease expires and the client retries it (max_retries).
            log.warning("DaskInvoker: the Dask task of an invocation killed its workers")
        except Exception as exc:
            await self._report(entry, exc)
        finally:
            self._inflight.pop(key, None)
            self._wake.set()

    async def _report(self, entry: bytes, exc: BaseException) -> None:
        """Fail the entry's run with the Dask task's error (if the run is still on)."""
        try:
            run_id = parse_entry(entry).run_id
        except ValueError:
            return
        tb = "".join(traceback.format_exception(exc))
        log.error("DaskInvoker: an invocation of run %s failed on Dask: %s", run_id, exc)
        keys = RunKeys(run_id)
        assert self._client is not None
        with contextlib.suppress(Exception):
            if await self._client.exists(keys.manifest):
                outbox = Outbox(self._client, keys, Signer(self._key), event_context(run_id))
                outbox.put(("fail", "internal", {"invocation": "(Dask task)",
                                                 "exc_type": type(exc).__name__,
                                                 "message": str(exc), "traceback": tb}))
                await outbox.close()

    async def _shutdown(self, timeout_s: float = 10.0) -> None:
        # Let invocations in flight finish (as the emulator lets busy processes finish).
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending and self._dask is not None:
                with contextlib.suppress(Exception):
                    await self._dask.cancel(list(self._inflight), force=True)


def _scheduler_of(target: Any) -> tuple[str, Any]:
    """The scheduler address and security of an address, a client or a cluster."""
    if isinstance(target, str):
        if not target:
            raise ValueError("DaskInvoker: empty scheduler address; pass e.g. "
                             "'tcp://127.0.0.1:8786', a distributed.Client or a cluster")
        return target, None
    address = getattr(target, "scheduler_address", None)  # clusters
    if address is None:
        scheduler = getattr(target, "scheduler", None)  # clients
        address = getattr(scheduler, "address", None)
    if not isinstance(address, str):
        raise TypeError("DaskInvoker: address_or_client must be a scheduler address, a "
                        f"distributed.Client or a Dask cluster, got {type(target).__name__}")
    return address, getattr(target, "security", None)


def _check_transport(address: str, security: Any) -> None:
    """Warn (refuse in strict mode) when the key would cross a network in clear."""
    from urllib.parse import urlsplit

    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme in ("tls", "inproc"):
        return
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if is_loopback_host(host):
        return
    message = (f"DaskInvoker: the scheduler {address} is reached without TLS, so the HMAC "
               "key and the Redis URL would cross the network in clear; use a tls:// "
               "address with a distributed.Security")
    if strict_mode():
        raise ValueError(message)
    import warnings

    from faasplan.runtime.security import SecurityWarning

    warnings.warn(message, SecurityWarning, stacklevel=3)


# -- in the Dask worker processes ------------------------------------------------------------
class _SandboxPlugin(WorkerPlugin):
    """Carries the Redis URL and key to each Dask worker; tears its sandboxes down."""

    def __init__(self, name: str, redis_url: str, key: bytes, keep_alive_s: float) -> None:
        self.name = name
        self.redis_url = redis_url
        self.key = key
        self.keep_alive_s = keep_alive_s

    def __repr__(self) -> str:  # never show the secrets
        return f"_SandboxPlugin({self.name!r})"

    def setup(self, worker: Any) -> None:
        with _HOSTS_LOCK:
            _CONFIG[self.name] = (self.redis_url, self.key, self.keep_alive_s)

    def teardown(self, worker: Any) -> None:
        with _HOSTS_LOCK:
            _CONFIG.pop(self.name, None)
            host = _HOSTS.pop(self.name, None)
        if host is not None:
            host.close()


_HOSTS_LOCK = threading.Lock()
_CONFIG: dict[str, tuple[str, bytes, float]] = {}
_HOSTS: dict[str, _SandboxHost] = {}
# One Dask worker process is one set of sandboxes per invoker (plugin name); they live
# as long as the process, like the warm processes of an emulator.


class _SandboxHost:
    """The sandboxes of one invoker in one Dask worker process.

    An event loop on its own thread holds the Redis client and idle
    :class:`WorkerProcess` sandboxes (one per Dask thread running an invocation at once),
    and remembers which runs this process served, and when.
    """

    def __init__(self, redis_url: str, key: bytes, keep_alive_s: float) -> None:
        self.keep_alive_s = keep_alive_s
        self.signer = Signer(key)
        self.loop = eventloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="faasplan-dask-sandboxes")
        self.thread.start()
        self.client: aioredis.Redis = self._call(_connect(redis_url))
        self.idle: list[WorkerProcess] = []
        self.served: OrderedDict[str, float] = OrderedDict()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def serve(self, entry: bytes, dispatched_at: float) -> str:
        """Serve one queue entry (blocking the calling Dask thread); ``"cold"``/``"warm"``."""
        return str(self._call(self._serve(entry, dispatched_at)))

    async def _serve(self, entry: bytes, dispatched_at: float) -> str:
        try:
            run_id = parse_entry(entry).run_id
        except ValueError:
            run_id = ""  # the sandbox logs and drops it
        last = self.served.get(run_id)
        cold = last is None or time.monotonic() - last >= self.keep_alive_s
        self._touch(run_id)  # an invocation starting now in another thread is warm
        sandbox = self.idle.pop() if self.idle else WorkerProcess(self.client, self.signer)
        try:
            await sandbox.serve(entry, cold=cold, dispatched_at=dispatched_at)
        finally:
            self._touch(run_id)
            self.idle.append(sandbox)
        return "cold" if cold else "warm"

    def _touch(self, run_id: str) -> None:
        self.served[run_id] = time.monotonic()
        self.served.move_to_end(run_id)
        while len(self.served) > _KEEP_RUNS:
            self.served.popitem(last=False)

    def close(self) -> None:
        """Close the sandboxes and the Redis client, stop the loop."""
        async def shut() -> None:
            for sandbox in self.idle:
                await sandbox.close()
            await self.client.aclose()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10.0)


async def _connect(url: str) -> aioredis.Redis:
    return connect(url)


def _host(plugin: str) -> _SandboxHost:
    with _HOSTS_LOCK:
        host = _HOSTS.get(plugin)
        if host is None:
            config = _CONFIG.get(plugin)
            if config is None:
                raise RuntimeError(f"this Dask worker has no faasplan sandbox {plugin!r}: the "
                                   "DaskInvoker that submitted the invocation has closed, or "
                                   "its worker plugin did not reach this worker")
            host = _HOSTS[plugin] = _SandboxHost(*config)
        return host


def serve_invocation(plugin: str, entry: bytes, dispatched_at: float) -> tuple[str, str]:
    """The Dask task of one invocation: serve ``entry`` in this worker process.

    Returns the start-up state (``"cold"`` or ``"warm"``) and the Dask worker's address.
    The sandbox reports the invocation's outcome to the run's client through Redis.
    """
    state = _host(plugin).serve(entry, dispatched_at)
    return state, distributed.get_worker().address
