"""The SimPy driver: every worker runs the real :func:`~faasplan.worker.execute_branch`.

Each invocation is one SimPy process that sends the worker logic the results of its
effect requests; each request becomes SimPy events timed by the models (storage,
network, FaaS platform, task behaviour). Nothing here decides anything about the plan:
that is the worker logic's job, so the simulator follows exactly what a real run does.

The client stores the large literals (and the DAG's parts, if some invocation may go by
reference) at time 0, then sends the initial invocations concurrently. A sandbox keeps
the DAG parts it fetched for the rest of the run: a warm one asked for a part again
answers at once, with 0 bytes moved. The run ends when
nothing is left to happen; the makespan is when the last sink's completion notification
reached the store (which is when the client, subscribed to it, learns of it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, Final, TypeAlias

import numpy as np
import simpy
from simpy.events import Event

from faasplan.platform import Platform
from faasplan.simulator.behaviour import TaskBehaviour
from faasplan.simulator.clock import URGENT, Clock, Done, clock_of, on_event, run_queue
from faasplan.simulator.errors import SimulationError, SimulationStuckError
from faasplan.simulator.faas import FaaSModel, Sandbox
from faasplan.simulator.groundtruth import GroundTruth
from faasplan.simulator.network import Endpoint, FairShareNetwork
from faasplan.simulator.storage import Storage, TransferRecord

# Imported from their own modules, not from the package: compiled together, the names
# are then known to be the compiled classes and functions, read and called directly.
from faasplan.worker.branch import (
    dag_parts,
    dag_parts_stored,
    execute_branch,
    initial_invocations,
    rides_behind_store,
)
from faasplan.worker.effects import (
    DAG_PART_PREFIX,
    Execute,
    Fetch,
    Invocation,
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
    sink_channel,
)
from faasplan.worker.log import CLIENT, invocation_label, invoke_events, logged
from faasplan.worker.log import Event as LogEvent
from faasplan.worker.spec import RunSpec
from faasplan.workflow.gcpause import gc_paused

_MB_S: Final = 1000.0  # 1 MB/s (10**6 bytes per s) in bytes per ms


class WorkerRun:
    """One invocation: its worker label, sandbox and timeline (ms from the run's start)."""

    __slots__ = ("boot_ms", "container", "end_ms", "endpoint", "fresh", "invocation",
                 "invoked_ms", "label", "memory_mb", "queued_ms", "start_ms", "startup_ms",
                 "state", "tasks")

    def __init__(self, label: str, invocation: Invocation, invoked_ms: float,
                 endpoint: Endpoint) -> None:
        self.label = label
        self.invocation = invocation
        self.memory_mb = invocation.memory_mb
        self.invoked_ms = invoked_ms
        self.endpoint = endpoint
        self.boot_ms = self.start_ms = self.end_ms = float("nan")
        self.queued_ms = 0.0
        self.startup_ms = 0.0
        self.state = "none"
        self.container = -1
        self.tasks = 0
        self.fresh = True  # no task executed yet: the next one carries the startup


class TaskRun:
    """One task execution: where, when, how much (ms from the run's start)."""

    __slots__ = ("end_ms", "exec_end_ms", "exec_start_ms", "input_bytes", "output_bytes",
                 "start_ms", "startup_ms", "startup_state", "task", "worker")

    def __init__(self, task: str, worker: WorkerRun, start_ms: float, exec_start_ms: float,
                 exec_ms: float, input_bytes: int, output_bytes: int) -> None:
        self.task = task
        self.worker = worker
        self.start_ms = start_ms
        self.exec_start_ms = exec_start_ms
        self.exec_end_ms = exec_start_ms + exec_ms
        self.end_ms = self.exec_end_ms
        self.input_bytes = input_bytes
        self.output_bytes = output_bytes
        self.startup_state = "none"
        self.startup_ms = 0.0


class _Now:
    """An effect's result available at once (no SimPy event needed)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_NONE: Final = _Now(None)
_HELD: Final = _Now(Payload(0))
"""The answer to a fetch of a DAG part the sandbox holds (payloads are never modified)."""
Outcome: TypeAlias = "Event | _Now"


class RunResult:
    """Raw records of one simulated run, turned into a :class:`~faasplan.simulator.Trace`."""

    def __init__(self, spec: RunSpec, makespan_ms: float, tasks: dict[str, TaskRun],
                 workers: list[WorkerRun], downloads: dict[str, list[tuple[str, TransferRecord]]],
                 uploads: dict[str, list[TransferRecord]], stored_at: dict[str, float],
                 storage_bytes: int, client_bytes: int, cold_starts: int, faas: FaaSModel,
                 log: list[LogEvent] | None = None) -> None:
        self.spec = spec
        self.makespan_ms = makespan_ms
        self.tasks = tasks
        self.workers = workers
        self.downloads = downloads
        self.uploads = uploads
        self.stored_at = stored_at
        self.storage_bytes = storage_bytes
        self.client_bytes = client_bytes
        self.cold_starts = cold_starts
        self.faas = faas
        self.log = log


class Simulation:
    """One simulated run of ``spec``; call :meth:`run` once.

    Parameters
    ----------
    spec : RunSpec
        The workflow's shape and placements, shared by all workers.
    env : simpy.Environment
        The clock (ms).
    storage : Storage
        Key-value store model (with its network).
    faas : FaaSModel
        Invocation, start and billing model.
    behaviour : TaskBehaviour
        Execution times and output sizes.
    rng : numpy.random.Generator
        The run's only source of randomness (shared with the models built for it).
    platform : Platform
        Worker and client bandwidths, invocation call time.
    log : list, optional
        Collects the run's decision log (:mod:`faasplan.worker.log`) when given.
    """

    def __init__(self, spec: RunSpec, env: simpy.Environment, storage: Storage,
                 faas: FaaSModel, behaviour: TaskBehaviour, rng: np.random.Generator,
                 platform: Platform, log: list[LogEvent] | None = None) -> None:
        self.spec = spec
        self.log = log
        self.env = env
        self.clock = clock_of(env)  # the time, read where compiled code reads it directly
        self.storage = storage
        self.faas = faas
        self.behaviour = behaviour
        # The usual task model, compiled like the driver: called directly.
        self._truth = behaviour if type(behaviour) is GroundTruth else None
        self.rng = rng
        self.platform = platform
        self.tasks: dict[str, TaskRun] = {}
        self.workers: list[WorkerRun] = []
        self.downloads: dict[str, list[tuple[str, TransferRecord]]] = {}
        self.uploads: dict[str, list[TransferRecord]] = {}
        self.storage_bytes = 0
        self.client_bytes = 0
        self._held: dict[int, set[str]] = {}  # sandbox -> DAG parts it fetched
        self._bandwidth: dict[int, float] = {}
        # Processor sharing on one host (the local emulator), or dedicated vCPUs.
        self._cpu = (FairShareNetwork(env, platform.host_cores, plain_callbacks=True)
                     if math.isfinite(platform.host_cores) else None)
        self._cores: dict[int, Endpoint] = {}
        # Built-in storage operations queue their answer as a plain callback; an operation
        # a subclass overrides is followed through the SimPy event it returns.
        kind = type(storage)
        self._fast_fetch = kind.fetch is Storage.fetch
        self._fast_many = self._fast_fetch and kind.fetch_many is Storage.fetch_many
        self._fast_store = kind.store is Storage.store
        self._fast_track = kind.track is Storage.track
        self._fast_notify = kind.notify is Storage.notify
        self._fast_wait = kind.wait_for is Storage.wait_for
        # The runtime sends a track or a notification that follows a store behind it, in
        # the store's round trip (see _Proc.after_store); with the built-in operations the
        # simulator does the same.
        self._behind_store = self._fast_store and self._fast_track and self._fast_notify
        self._ran = False

    @classmethod
    def create(cls, spec: RunSpec, platform: Platform, behaviour: TaskBehaviour,
               rng: np.random.Generator, *, log: bool = False) -> Simulation:
        """Wire the default models for ``platform`` around a fresh environment.

        ``log``: record the decision log (kept in the result's ``log``).
        """
        env = simpy.Environment(initial_time=0.0)  # float times from the start
        network = FairShareNetwork(env, platform.storage_bandwidth_mb_s * _MB_S,
                                   plain_callbacks=True)
        storage = Storage(env, network, platform.storage_latency_ms,
                          platform.transfer_overhead_ms)
        faas = FaaSModel(env, platform, rng)
        return cls(spec, env, storage, faas, behaviour, rng, platform, [] if log else None)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Simulate to the end; raise :class:`SimulationStuckError` if tasks never ran."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; create a new one for another run")
        self._ran = True
        self.env.process(self._client())
        with gc_paused():
            run_queue(self.env)
        self._check_finished()
        notified = self.storage.notified
        makespan = 0.0
        for tid in self.spec.order:
            if self.spec.tasks[tid].is_sink:
                at = notified.get(sink_channel(tid))
                if at is None:
                    raise SimulationStuckError(
                        f"sink task {tid!r} ran but never announced its output; the worker "
                        f"logic ended without notifying {sink_channel(tid)!r}", (tid,))
                makespan = max(makespan, at)
        return RunResult(self.spec, makespan, self.tasks, self.workers, self.downloads,
                         self.uploads, self.storage.stored_at, self.storage_bytes,
                         self.client_bytes, self.faas.cold_starts, self.faas, self.log)

    def _client(self) -> Generator[Event, Any, None]:
        endpoint = Endpoint(self.platform.client_bandwidth_mb_s * _MB_S)
        # One pipelined batch, as the runtime's client stores them.
        items = list(self._client_payloads().items())
        if items:
            self.client_bytes += sum(p.nbytes for _, p in items)
            yield self.storage.store_many(items, endpoint, TransferRecord(self.env.now))
        for inv in initial_invocations(self.spec):
            if self.log is not None:
                self.log.extend(invoke_events(CLIENT, inv, self.env.now, self.env.now))
            self._launch(inv)

    def _client_payloads(self) -> dict[str, Payload]:
        """Large literals (each once) and the DAG's parts when some invocation may go by
        reference."""
        spec = self.spec
        if spec.part_payloads:  # made once per DagShape
            stored = dict(spec.literal_payloads)
            if dag_parts_stored(spec):
                stored.update(spec.part_payloads)
            return stored
        seen: dict[str, int] = {}  # a spec from a manifest
        for tid in spec.order:
            for key, nbytes in spec.tasks[tid].literals:
                seen.setdefault(key, nbytes)
        if dag_parts_stored(spec):
            seen.update(dag_parts(spec))
        return {key: Payload(nbytes) for key, nbytes in seen.items()}

    def _check_finished(self) -> None:
        missing = tuple(t for t in self.spec.order if t not in self.tasks)
        if not missing:
            return
        blocked = self.storage.blocked()
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise SimulationStuckError(
            f"the simulated run stopped with {len(missing)} of {len(self.spec.order)} tasks "
            f"never executed: {shown}. Workers were still waiting for keys "
            f"{blocked['keys'][:10]} and channels {blocked['channels'][:10]}, which nothing "
            f"will ever store or notify: the plan deadlocks, or a model never answers",
            missing)

    # -- workers --------------------------------------------------------------------------
    # A worker is a chain of callbacks on the event queue, not a SimPy process: each step
    # is queued at the same (time, priority) and in the same order as the SimPy events it
    # replaces, so runs are identical, without a process object, an event object and a
    # generator resumption per step.
    def _launch(self, inv: Invocation) -> None:
        label = invocation_label(inv, len(self.workers))
        bw = self._bandwidth.get(inv.memory_mb)
        if bw is None:
            bw = self._bandwidth[inv.memory_mb] = \
                self.platform.worker_bandwidth_mb_s(inv.memory_mb) * _MB_S
        w = WorkerRun(label, inv, self.clock.now, Endpoint(bw))
        self.workers.append(w)
        self.clock.soon(self._invoked, w, URGENT)  # where a process would initialize

    def _invoked(self, w: WorkerRun) -> None:
        self.clock.later(self.faas.invocation_ms(w.invocation), self._arrived, w)

    def _arrived(self, w: WorkerRun) -> None:
        arrived = self.clock.now
        slot = self.faas.admit()
        if slot is None:
            self._admitted(w, arrived)
        else:
            on_event(slot, lambda _: self._admitted(w, arrived))

    def _admitted(self, w: WorkerRun, arrived: float) -> None:
        now = self.clock.now
        w.queued_ms = now - arrived
        w.boot_ms = now
        sandbox = self.faas.start(w.memory_mb)
        w.container, w.state, w.startup_ms = sandbox.container, sandbox.state, sandbox.startup_ms
        if sandbox.startup_ms > 0:
            self.clock.later(sandbox.startup_ms, self._started, (w, sandbox))
        else:
            self._started((w, sandbox))

    def _started(self, arg: tuple[WorkerRun, Sandbox]) -> None:
        w, sandbox = arg
        w.start_ms = now = self.clock.now
        branch = execute_branch(self.spec, w.invocation)
        log = self.log
        if log is not None:
            log.append(LogEvent(w.label, "start", None, None, w.memory_mb, w.boot_ms, now,
                             w.state))
            branch = logged(branch, w.label, log.append, self._now)
        _Proc(self, w, branch, partial(self._ended, w, sandbox)).step(None)

    def _ended(self, w: WorkerRun, sandbox: Sandbox, _result: Any) -> None:
        w.end_ms = now = self.clock.now
        if self.log is not None:
            self.log.append(LogEvent(w.label, "end", None, None, 0, now, now))
        self.faas.release(sandbox)

    def _now(self) -> float:
        return self.clock.now

    # -- effects --------------------------------------------------------------------------
    def _perform(self, effect: Any, proc: _Proc, done: Done) -> Outcome | None:
        """Start ``effect`` for ``proc``: its handler's outcome (see below).

        (A chain of isinstance tests, most frequent first: compiled, each handler is then
        called directly with the effect's own type.)
        """
        if isinstance(effect, Fetch):
            return self._fetch(effect, proc, done)
        if isinstance(effect, Execute):
            return self._execute(effect, proc, done)
        if isinstance(effect, Store):
            return self._store(effect, proc, done)
        if isinstance(effect, Parallel):
            return self._parallel(effect, proc, done)
        if isinstance(effect, Track):
            return self._track(effect, proc, done)
        if isinstance(effect, Invoke):
            return self._invoke(effect, proc, done)
        if isinstance(effect, Notify):
            return self._notify(effect, proc, done)
        if isinstance(effect, WaitFor):
            return self._wait_for(effect, proc, done)
        if isinstance(effect, Spawn):
            return self._spawn(effect, proc, done)
        if isinstance(effect, Join):
            return self._join(effect, proc, done)
        if isinstance(effect, Sleep):
            return self._sleep(effect, proc, done)
        raise SimulationError(f"worker {proc.worker.label!r} yielded {effect!r}, which is not "
                              f"an effect the simulator knows")

    # A handler either returns the result (``_Now``), returns a SimPy event that will
    # carry it, or returns ``None`` after queueing ``done(result)`` itself.
    def _switch(self, proc: _Proc, task: str) -> None:
        if proc.task != task:
            proc.task = task
            proc.pre_start = self.clock.now
            proc.post = None

    def _fetch(self, eff: Fetch, proc: _Proc, done: Done) -> Outcome | None:
        tid = eff.task
        if eff.key.startswith(DAG_PART_PREFIX):  # is_dag_part, inlined: a hot path
            held = self._held.get(proc.worker.container)
            if held is None:
                held = self._held[proc.worker.container] = set()
            if eff.key in held:
                return _HELD  # this sandbox fetched it earlier in the run
            held.add(eff.key)
        record = TransferRecord(self.clock.now)
        if tid is not None:
            if proc.task != tid:
                self._switch(proc, tid)
            try:
                self.downloads[tid].append((eff.key, record))
            except KeyError:
                self.downloads[tid] = [(eff.key, record)]
        if self._fast_fetch:
            self.storage.fetch(eff.key, proc.worker.endpoint, record, wait=eff.wait,
                               stream=eff.stream, task=tid, done=done)
            return None
        return self.storage.fetch(eff.key, proc.worker.endpoint, record, wait=eff.wait,
                                  stream=eff.stream, task=tid)

    def _store(self, eff: Store, proc: _Proc, done: Done) -> Outcome | None:
        record = TransferRecord(self.clock.now)
        if eff.task is not None:
            self.uploads.setdefault(eff.task, []).append(record)
        self.storage_bytes += eff.payload.nbytes
        if self._fast_store:
            if self._behind_store and done is proc.wake:
                done = proc.after_store  # (not inside a parallel set, which waits for all)
            self.storage.store(eff.key, eff.payload, proc.worker.endpoint, record,
                               stream=eff.stream, done=done)
            return None
        return self.storage.store(eff.key, eff.payload, proc.worker.endpoint, record,
                                  stream=eff.stream)

    def _track(self, eff: Track, proc: _Proc, done: Done) -> Outcome | None:
        if self._fast_track:
            self.storage.track(eff.task, eff.upstream, eff.expected, done=done)
            return None
        return self.storage.track(eff.task, eff.upstream, eff.expected)

    def _notify(self, eff: Notify, proc: _Proc, done: Done) -> Outcome | None:
        if self._fast_notify:
            self.storage.notify(eff.channel, done=done)
            return None
        return self.storage.notify(eff.channel)

    def _wait_for(self, eff: WaitFor, proc: _Proc, done: Done) -> Outcome | None:
        if eff.task is not None:
            self._switch(proc, eff.task)  # waiting belongs to the task's input phase
        if self._fast_wait:
            return _NONE if self.storage.wait_for(eff.channel, done=done) is None else None
        ev = self.storage.wait_for(eff.channel)
        return _NONE if not isinstance(ev, Event) else ev

    def _invoke(self, eff: Invoke, proc: _Proc, done: Done) -> Outcome | None:
        self._launch(eff.invocation)
        call = self.platform.invoke_call_ms
        if call > 0:
            self.clock.later(call, done, None)
            return None
        return _NONE

    def _execute(self, eff: Execute, proc: _Proc, done: Done) -> Outcome | None:
        tid = eff.task
        tasks = self.tasks
        if tid in tasks:
            first = tasks[tid].worker.label
            raise SimulationError(f"task {tid!r} executed twice (by {first!r} and "
                                  f"{proc.worker.label!r})")
        if proc.task != tid:
            self._switch(proc, tid)
        w = proc.worker
        input_bytes = 0
        for p in eff.inputs.values():
            input_bytes += p.nbytes
        truth = self._truth
        if truth is not None:
            ms = truth.exec_ms(tid, w.memory_mb, input_bytes, self.rng)
            out = truth.output_bytes(tid, input_bytes, self.rng)
        else:  # any TaskBehaviour: its numbers as the fields' types (a size in whole bytes)
            ms = float(self.behaviour.exec_ms(tid, w.memory_mb, input_bytes, self.rng))
            out = _whole_bytes(self.behaviour.output_bytes(tid, input_bytes, self.rng), tid)
        if not ms >= 0:
            raise SimulationError(f"behaviour gave task {tid!r} an execution time of {ms!r} ms")
        clock = self.clock
        rec = TaskRun(tid, w, proc.pre_start, clock.now, ms, input_bytes, out)
        if w.fresh:
            w.fresh = False
            rec.startup_state, rec.startup_ms = w.state, w.startup_ms
        w.tasks += 1
        tasks[tid] = rec
        proc.post = rec
        if self._cpu is None:
            clock.later(ms, done, Payload(out))
            return None
        # ``ms`` of one core's work, done at the rate the host's cores are shared.
        core = self._cores.get(id(w))
        if core is None:
            core = self._cores[id(w)] = Endpoint(1.0)
        self._cpu.transfer(ms, core, self._executed, (done, rec, Payload(out)))
        return None

    def _executed(self, arg: tuple[Done, TaskRun, Payload]) -> None:
        done, rec, out = arg
        rec.exec_end_ms = rec.end_ms = self.clock.now
        self.clock.soon(done, out)

    def _spawn(self, eff: Spawn, proc: _Proc, done: Done) -> Outcome | None:
        handle = Event(self.env)  # fired like a finished process: at once, queued
        child = _Proc(self, proc.worker, eff.branch, handle.succeed, proc.task, proc.post)
        self.clock.soon(self._step_first, child, URGENT)
        return _Now(handle)

    def _step_first(self, proc: _Proc) -> None:
        proc.step(None)

    def _join(self, eff: Join, proc: _Proc, done: Done) -> Outcome | None:
        if eff.task is not None:
            self._switch(proc, eff.task)  # pre-loaded inputs: the task's input phase
        gather = _Gather(self.clock, len(eff.handles), done)
        for i, handle in enumerate(eff.handles):
            gather.add(i, handle)
        return gather.outcome()

    def _parallel(self, eff: Parallel, proc: _Proc, done: Done) -> Outcome | None:
        effects = eff.effects
        batch: list[int] | None = None
        if self._fast_many:
            # Which effects are reads of keys known to exist (fetches without ``wait`` or
            # ``stream``, and not a DAG part this sandbox holds): the runtime sends two or
            # more of them as one ``MGET``.
            held = self._held.get(proc.worker.container)
            batch = []
            for i, e in enumerate(effects):
                if isinstance(e, Fetch) and not e.wait and not e.stream \
                        and not (held is not None and e.key in held):
                    batch.append(i)
            if len(batch) == len(effects) and len(batch) > 1:
                self._fetch_many(effects, proc, done)  # the whole set is one request
                return None
            if len(batch) < 2:
                batch = None
        gather = _Gather(self.clock, len(effects), done)
        for i, e in enumerate(effects):
            if batch is None or i not in batch:
                gather.add(i, self._perform(e, proc, partial(gather.put, i)))
        if batch is not None:
            gather.left += 1
            self._fetch_many(tuple(effects[i] for i in batch), proc,
                             partial(gather.put_many, batch))
        return gather.outcome()

    def _fetch_many(self, effects: tuple[Fetch, ...], proc: _Proc, done: Done) -> None:
        """Plain fetches as one request (:meth:`Storage.fetch_many`); ``done`` gets the
        payloads in order."""
        now = self.clock.now
        records: list[TransferRecord] = []
        downloads = self.downloads
        held: set[str] | None = None
        for eff in effects:
            if eff.key.startswith(DAG_PART_PREFIX):
                if held is None:
                    held = self._held.get(proc.worker.container)
                    if held is None:
                        held = self._held[proc.worker.container] = set()
                held.add(eff.key)
            record = TransferRecord(now)
            records.append(record)
            tid = eff.task
            if tid is not None:
                if proc.task != tid:
                    self._switch(proc, tid)
                try:
                    downloads[tid].append((eff.key, record))
                except KeyError:
                    downloads[tid] = [(eff.key, record)]
        self.storage.fetch_many([e.key for e in effects], proc.worker.endpoint, records, done,
                                tasks=[e.task for e in effects])

    def _sleep(self, eff: Sleep, proc: _Proc, done: Done) -> Outcome | None:
        if eff.ms < 0:
            raise ValueError(f"Negative delay {eff.ms}")
        self.clock.later(eff.ms, done, None)
        return None


class _Proc:
    """A branch being driven: its worker and which task its effects are working for.

    ``task``/``pre_start``: the task whose inputs it is gathering and since when.
    ``post``: after executing a task, the effects that follow (upload, tracking,
    delegation) extend that task's ``end_ms``. ``finish`` gets the branch's return value.
    """

    __slots__ = ("after_store", "clock", "finish", "on_event", "post", "pre_start", "send",
                 "sim", "task", "wake", "worker")
    __deletable__ = ("after_store", "on_event", "wake")  # see close()

    def __init__(self, sim: Simulation, worker: WorkerRun, branch: Generator[Any, Any, Any],
                 finish: Callable[[Any], Any], task: str | None = None,
                 post: TaskRun | None = None) -> None:
        self.sim = sim
        self.clock = sim.clock
        self.worker = worker
        self.send = branch.send
        self.finish = finish
        self.task = task
        self.post = post
        self.pre_start = 0.0
        self.wake = self._wake  # bound once: queued with every result
        self.on_event = self._on_event
        self.after_store = self._after_store

    def close(self) -> None:
        """Drop the bound methods that refer back to this object, once the branch ended
        (so reference counting frees it, without the cyclic collector)."""
        del self.wake, self.on_event, self.after_store

    def _wake(self, value: Any) -> None:
        post = self.post
        if post is not None:
            post.end_ms = self.clock.now
        self.step(value)

    def _after_store(self, _value: None) -> None:
        """A store is acknowledged. Like the runtime driver, the simulator takes the
        branch's next effect at once: a track, a notification or a parallel set of tracks
        went to the server behind the store, in its round trip, so its answer is in now
        as well. Any other effect starts now, as after any answer."""
        post = self.post
        if post is not None:
            post.end_ms = self.clock.now
        try:
            effect = self.send(None)
        except StopIteration as stop:
            self.close()
            self.finish(stop.value)
            return
        if not rides_behind_store(effect):
            self.step(None, effect)
            return
        storage = self.sim.storage
        value: Any = None
        # (isinstance, not type(): the compiled code then reads the fields directly.)
        if isinstance(effect, Track):
            value = storage.track_now(effect.task, effect.upstream, effect.expected)
        elif isinstance(effect, Notify):
            storage.notify_now(effect.channel)
        else:
            tracks: tuple[Track, ...] = effect.effects
            value = [storage.track_now(e.task, e.upstream, e.expected) for e in tracks]
        self.step(value)

    def step(self, value: Any, effect: Any = None) -> None:
        """Send the branch ``value`` and the results of its effects while they are
        available at once; return when it waits for one (or ends). ``effect``: the
        branch already asked for it (``value`` is then unused)."""
        sim = self.sim
        clock = self.clock
        send = self.send
        while True:
            if effect is None:
                try:
                    effect = send(value)
                except StopIteration as stop:
                    self.close()
                    self.finish(stop.value)
                    return
            outcome = sim._perform(effect, self, self.wake)
            effect = None
            if outcome is None:
                return  # the handler has queued ``self.wake`` with the result
            if isinstance(outcome, _Now):
                value = outcome.value
            elif outcome.callbacks is not None:
                outcome.callbacks.append(self.on_event)
                return
            else:
                value = _event_value(outcome)
            if self.post is not None:
                self.post.end_ms = clock.now

    def _on_event(self, event: Event) -> None:
        self._wake(_event_value(event))


class _Gather:
    """The results of several outcomes, in order, once all are available.

    Like a SimPy condition: when the last pending one arrives, the list is queued for
    ``done`` at the current time (behind what is already queued then).
    """

    __slots__ = ("clock", "done", "left", "values")

    def __init__(self, clock: Clock, n: int, done: Done) -> None:
        self.clock = clock
        self.done = done
        self.values: list[Any] = [None] * n
        self.left = 1  # released by ``outcome``

    def add(self, i: int, outcome: Outcome | None) -> None:
        if outcome is None:
            self.left += 1  # its handler queued ``put(i, ...)``
        elif isinstance(outcome, _Now):
            self.values[i] = outcome.value
        elif outcome.callbacks is None:
            self.values[i] = _event_value(outcome)
        else:
            self.left += 1
            outcome.callbacks.append(partial(self._put_event, i))

    def put(self, i: int, value: Any) -> None:
        self.values[i] = value
        self.left -= 1
        if self.left == 0:
            self.clock.soon(self.done, self.values)

    def put_many(self, indices: list[int], values: list[Any]) -> None:
        """Several results arrived together (one batched request counts as one pending)."""
        if len(indices) != len(values):
            raise SimulationError(f"{len(values)} results for {len(indices)} fetches")
        mine = self.values
        for j, i in enumerate(indices):
            mine[i] = values[j]
        self.left -= 1
        if self.left == 0:
            self.clock.soon(self.done, self.values)

    def _put_event(self, i: int, event: Event) -> None:
        self.put(i, _event_value(event))

    def outcome(self) -> Outcome | None:
        """``_Now`` with the values if all were available at once, else ``None``."""
        self.left -= 1
        if self.left == 0:
            return _Now(self.values)
        return None


def _whole_bytes(nbytes: Any, task: str) -> int:
    """A task model's output size as an ``int`` (a float or a NumPy number is rounded)."""
    if isinstance(nbytes, int):
        return nbytes
    try:
        return round(float(nbytes))
    except (TypeError, ValueError, OverflowError):
        raise SimulationError(f"behaviour gave task {task!r} an output of {nbytes!r} bytes; "
                              "output_bytes must return a finite number") from None


def _event_value(event: Event) -> Any:
    if not event._ok:
        raise event._value
    return event._value
