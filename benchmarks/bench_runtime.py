"""Benchmark of the Redis runtime: faasplan against Dask like for like, and bytes through Redis.

Part ``overhead``: tree reductions of tiny tasks (by default 128, 512 and 2048 leaves: 255,
1,023 and 4,095 tasks) run by faasplan and by Dask distributed in the same run, measured
the same way:

* **same start and end**: the caller's ``time.perf_counter`` around ``faasplan.run()``
  (whose first action is storing the DAG) and around ``client.compute(graph).result()``
  (graph submission to the result gathered at the client). Building the graph object
  (``Workflow`` / ``dask.delayed``) is outside both;
* **same workers**: 2 worker processes running 1 task at a time each —
  ``LocalFaaS(max_running=2, max_processes=2)`` and ``LocalCluster(n_workers=2,
  threads_per_worker=1, processes=True)``; a third row runs faasplan on those same Dask
  processes through :class:`faasplan.runtime.DaskInvoker`;
* **same warmth**: one discarded run per system and size first; then the repeats are
  interleaved (faasplan, Dask, faasplan on Dask, again), so that the machine's load
  changes touch every system alike; every result is checked against ``run_local``.

Reported per size: median wall ms per task, faasplan's own ``makespan_ms`` (from storing
the DAG to the last sink's announcement) next to its wall time and the gap between them,
and the ratio faasplan/Dask of the medians.

Part ``gap``: where ``run()``'s wall time beyond ``makespan_ms`` goes, from wall-clock
stamps taken around the client's phases (set-up and encoding, storing, waiting, draining,
reading the result, clean-up, building the trace).

Part ``profile`` (only when asked for): ``cProfile`` of the calling thread around one warm
``run()``: cumulative time of the client's parts and the functions with the most own time.

Part ``commands`` (only when asked for): Redis commands per task of one warm run, by
command (``INFO commandstats``; commands inside Lua scripts count too), and the requests
the server read (``total_reads_processed``: about the round trips, a pipeline being one).

Part ``bytes``: network traffic of the Redis server (``INFO stats``) for a tree reduction
and GEMM, all tasks flexible vs. every task with CLUSTER (and DELAYED_IO on one upstream
of each fan-in).

Run::

    python benchmarks/bench_runtime.py                 # all parts, markdown on stdout
    python benchmarks/bench_runtime.py --part overhead --leaves 128 --repeats 2
    python benchmarks/bench_runtime.py --part gap --leaves 512
    python benchmarks/bench_runtime.py --part profile --leaves 512   # cProfile of the client
    python benchmarks/bench_runtime.py --part commands --leaves 512  # Redis commands per task

The overhead part ends with one summary line, ``runtime: X ms/task vs Dask Y ms/task
(ratio R), wall-clock, same run``, for the largest size.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from faasplan.runtime import DaskInvoker, LocalFaaS, new_key, run
from faasplan.runtime.embedded import EmbeddedRedis
from faasplan.worker import Opt, Payload, Placement, RunSpec
from faasplan.worker.inmemory import DeadlockError, run_in_memory
from faasplan.workflow import TaskNode, Workflow, map_leaves
from faasplan.workflow.local import profile, run_local
from faasplan.workloads import gemm, tree_reduction

SLOTS = 2
"""Worker processes of each system, each running one task at a time."""


def _same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else bool(a == b)


# -- overhead --------------------------------------------------------------------------------
def _dask_graph(wf: Workflow, prefix: str, delayed: Callable[..., Any]) -> Any:
    nodes: dict[str, Any] = {}
    for tid in wf.topological_order:
        node = wf.tasks[tid]
        args, kwargs = map_leaves((node.args, node.kwargs),
                                  lambda n: nodes[wf.id_of(n)], TaskNode)
        nodes[tid] = delayed(node.func.fn, pure=False)(*args, **kwargs,
                                                       dask_key_name=prefix + tid)
    return nodes[wf.sinks[0]]


class Systems:
    """The three systems of the comparison, set up once and kept warm between runs."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        import dask
        from distributed import Client, LocalCluster

        self.delayed = dask.delayed
        self.key = new_key()
        self.url = stack.enter_context(EmbeddedRedis()).url
        self.faas = stack.enter_context(LocalFaaS(self.url, self.key, max_running=SLOTS,
                                                  max_processes=SLOTS))
        cluster = stack.enter_context(LocalCluster(n_workers=SLOTS, threads_per_worker=1,
                                                   processes=True, dashboard_address=None))
        self.client = stack.enter_context(Client(cluster))
        self.on_dask = stack.enter_context(DaskInvoker(cluster, self.url, self.key))
        self._graphs = 0

    def faasplan(self, wf: Workflow, invoker: Any) -> tuple[float, Any]:
        """Wall ms of one ``run()`` (caller's clock) and its result."""
        start = time.perf_counter()
        result = run(wf, None, self.url, hmac_key=self.key, invoker=invoker, timeout_s=900)
        return (time.perf_counter() - start) * 1000.0, result

    def dask(self, wf: Workflow) -> tuple[float, Any]:
        """Wall ms of one ``client.compute(graph).result()`` and the value."""
        self._graphs += 1
        sink = _dask_graph(wf, prefix=f"r{self._graphs}-", delayed=self.delayed)
        start = time.perf_counter()
        value = self.client.compute(sink).result()
        return (time.perf_counter() - start) * 1000.0, value


def compare(systems: Systems, leaves: int, leaf_size: int, repeats: int,
            on_dask_max_tasks: int) -> dict[str, Any]:
    """Interleaved warm runs of one tree reduction on the three systems.

    faasplan on Dask runs only up to ``on_dask_max_tasks`` tasks (it is the slowest).
    """
    wf = tree_reduction(leaves=leaves, leaf_size=leaf_size)
    expected = run_local(wf)
    walls: dict[str, list[float]] = {"faasplan": [], "dask": [], "on_dask": []}
    makespans: dict[str, list[float]] = {"faasplan": [], "on_dask": []}
    invokers = [("faasplan", systems.faas)]
    if len(wf) <= on_dask_max_tasks:
        invokers.append(("on_dask", systems.on_dask))
    for attempt in range(repeats + 1):  # the first round warms every system up
        for name, invoker in invokers:
            wall, result = systems.faasplan(wf, invoker)
            assert _same(result.result, expected), f"{name} returned a wrong result"
            if attempt:
                walls[name].append(wall)
                makespans[name].append(result.makespan_ms)
            if name == "faasplan":
                wall, value = systems.dask(wf)
                assert _same(value, expected), "Dask returned a wrong result"
                if attempt:
                    walls["dask"].append(wall)
    return {"tasks": len(wf), "leaves": leaves, "walls": walls, "makespans": makespans}


def overhead_rows(results: list[dict[str, Any]], repeats: int) -> list[str]:
    med = statistics.median
    rows = [
        f"Tree reductions of 16-float64 leaves, median of {repeats} warm interleaved runs; "
        f"{SLOTS} worker processes x 1 task at a time for every system. Wall = the caller's "
        "clock around `run()` / `client.compute(graph).result()`.",
        "",
        "| tasks | faasplan wall ms/task | faasplan makespan ms/task | wall - makespan "
        "(% of wall) | Dask wall ms/task | faasplan / Dask (wall) | faasplan on Dask "
        "(DaskInvoker) wall ms/task |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = r["tasks"]
        w, d = med(r["walls"]["faasplan"]), med(r["walls"]["dask"])
        on_dask = f"{med(r['walls']['on_dask']) / n:.2f}" if r["walls"]["on_dask"] else "-"
        m = med(r["makespans"]["faasplan"])
        gaps = [a - b for a, b in zip(r["walls"]["faasplan"], r["makespans"]["faasplan"],
                                      strict=True)]
        rows.append(f"| {n:,} | {w / n:.2f} | {m / n:.2f} | {med(gaps):.0f} ms "
                    f"({100 * med(gaps) / w:.0f} %) | {d / n:.2f} | {w / d:.2f} | {on_dask} |")
    rows += ["", "All runs (wall ms):", ""]
    for r in results:
        runs = "; ".join(f"{k} {[round(x) for x in v]}" for k, v in r["walls"].items() if v)
        spans = [round(x) for x in r["makespans"]["faasplan"]]
        rows.append(f"- {r['tasks']:,} tasks: {runs}; faasplan makespan_ms {spans}")
    return rows


def summary_line(result: dict[str, Any]) -> str:
    n = result["tasks"]
    ours = statistics.median(result["walls"]["faasplan"]) / n
    theirs = statistics.median(result["walls"]["dask"]) / n
    return (f"runtime: {ours:.2f} ms/task vs Dask {theirs:.2f} ms/task (ratio "
            f"{ours / theirs:.2f}), wall-clock, same run ({n:,} tasks)")


# -- gap: where run()'s wall time beyond makespan_ms goes -----------------------------------
PHASES = ("resolve_placements", "prepare_run", "_net_bytes", "_store_run", "_start", "_wait",
          "_results", "_cleanup", "build_real_trace", "enqueue_many")
"""Client functions stamped (those ``faasplan.runtime.client`` has; missing ones skipped)."""


@contextlib.contextmanager
def stamped(log: list[tuple[str, float, float]]) -> Iterator[None]:
    """Record (name, start ms, end ms), wall clock, of every call to the client's phases."""
    import faasplan.runtime.client as client_module
    import faasplan.runtime.trace as trace_module

    def wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        if asyncio_iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.time() * 1000.0
                try:
                    return await fn(*args, **kwargs)
                finally:
                    log.append((name, start, time.time() * 1000.0))
            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.time() * 1000.0
            try:
                return fn(*args, **kwargs)
            finally:
                log.append((name, start, time.time() * 1000.0))
        return timed

    patched: list[tuple[Any, str, Any]] = []
    session = getattr(client_module, "_Session", None)
    for name in PHASES:
        for owner in (client_module, session, trace_module):
            if owner is not None and name in vars(owner):
                original = vars(owner)[name]
                patched.append((owner, name, original))
                setattr(owner, name, wrap(original, name))
                break
    try:
        yield
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def asyncio_iscoroutinefunction(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def gap(leaves: int, leaf_size: int, repeats: int) -> list[str]:
    """Median ms per client phase of warm ``run()`` calls on LocalFaaS, and the makespan."""
    wf = tree_reduction(leaves=leaves, leaf_size=leaf_size)
    key = new_key()
    per: dict[str, list[float]] = {}
    with EmbeddedRedis() as server, LocalFaaS(server.url, key, max_running=SLOTS,
                                              max_processes=SLOTS) as faas:
        run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)  # warm-up
        for _ in range(repeats):
            log: list[tuple[str, float, float]] = []
            with stamped(log):
                call = time.time() * 1000.0
                result = run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)
                back = time.time() * 1000.0
            t0 = next(s for name, s, _ in log if name == "_store_run")
            end_of = {name: e for name, _, e in log}
            sums: dict[str, float] = {}
            for name, s, e in log:
                sums[name] = sums.get(name, 0.0) + (e - s)
            announced = t0 + result.makespan_ms
            parts = {
                "wall (caller)": back - call,
                "makespan_ms": result.makespan_ms,
                "before the first action (checks, prepare_run, connect, INFO)": t0 - call,
                "  of which prepare_run (encoding)": sums.get("prepare_run", 0.0),
                "  of which resolve_placements": sums.get("resolve_placements", 0.0),
                "INFO stats, before and after (Redis traffic)": sums.get("_net_bytes", 0.0),
                "  from the first action to the first invocations pushed":
                    min((e for name, _, e in log if name == "enqueue_many"),
                        default=t0) - t0,
                "  _start (encode inline subDAGs, push the initial invocations)":
                    sums.get("_start", 0.0),
                "after the last sink's announcement, in _wait (drain)":
                    end_of["_wait"] - announced,
                "_results (read the sink's output)": sums.get("_results", 0.0),
                "_cleanup (unlink the run's keys)": sums.get("_cleanup", 0.0),
                "build_real_trace": sums.get("build_real_trace", 0.0),
                "after build_real_trace (INFO, closing, asyncio.run's end)":
                    back - max(e for _, _, e in log),
            }
            accounted = sum(v for k, v in parts.items()
                            if not k.startswith(("wall", "  ", "INFO")))
            parts["between those parts (the decision log re-timed, INFO after the run)"] = \
                parts["wall (caller)"] - accounted
            for name, value in parts.items():
                per.setdefault(name, []).append(value)
    n = len(wf)
    wall = statistics.median(per["wall (caller)"])
    rows = [f"Tree reduction, {leaves} leaves ({n:,} tasks), LocalFaaS {SLOTS} processes, "
            f"median of {repeats} warm runs:", "", "| part of `run()` | ms | % of wall |",
            "|---|---:|---:|"]
    for name, values in per.items():
        value = statistics.median(values)
        rows.append(f"| {name} | {value:.0f} | {100 * value / wall:.1f} |")
    return rows


# -- profile: where the calling thread's time goes ----------------------------------------------
PROFILED = (
    ("client.py", "run", "run() (the whole call)"),
    ("manifest.py", "prepare_run", "prepare_run (whole-DAG encoding, spec, manifest)"),
    ("client.py", "_store_run", "_store_run (reserve, store DAG parts and manifest)"),
    ("client.py", "_start", "_start (inline subDAGs, seal, push)"),
    ("invoking.py", "inline_blob", "  inline_blob (encode the inline subDAGs)"),
    ("manifest.py", "seal_invocation", "  seal_invocation"),
    ("invoking.py", "enqueue_many", "  enqueue_many (Redis pipelines)"),
    ("client.py", "_wait", "_wait (events, supervisor)"),
    ("client.py", "_pop_events", "  _pop_events (BLPOP/LPOP, client side)"),
    ("client.py", "_handle", "  _handle (apply one event)"),
    ("security.py", "loads", "  Signer.loads (verify and unpickle events)"),
    ("client.py", "_supervise", "  _supervise"),
    ("client.py", "_results", "_results"),
    ("client.py", "_cleanup", "_cleanup"),
    ("trace.py", "build_real_trace", "build_real_trace"),
    ("selectors.py", "select", "selector select() (idle: waiting for Redis or workers)"),
    ("~", "<method 'send' of '_socket.socket' objects>",
     "socket send() (incl. re-taking the GIL from other threads)"),
)
"""(file name, function name, label) rows of the profile table; cumulative times."""


def client_profile(leaves: int, leaf_size: int, top: int = 15) -> list[str]:
    """``cProfile`` of the calling thread around one warm ``run()`` on LocalFaaS.

    Cumulative times of the client's parts (a coroutine counts only while it runs, so
    the event loop's ``select`` is the time spent waiting), then the functions with the
    most own time. Profiling slows the client itself (not the workers) by about 1.5-2x.
    """
    import cProfile
    import pstats

    wf = tree_reduction(leaves=leaves, leaf_size=leaf_size)
    key = new_key()
    with EmbeddedRedis() as server, LocalFaaS(server.url, key, max_running=SLOTS,
                                              max_processes=SLOTS) as faas:
        run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)  # warm-up
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        result = run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)
        prof.disable()
        wall = (time.perf_counter() - start) * 1000.0
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = {}
    for (path, _, name), (_, _, _, ct, _) in raw.items():
        fn = (os.path.basename(path), name)
        cumulative[fn] = cumulative.get(fn, 0.0) + ct * 1000.0
    n = len(wf)
    rows = [f"Tree reduction, {leaves} leaves ({n:,} tasks), LocalFaaS {SLOTS} processes, one "
            f"warm run under cProfile: wall {wall:.0f} ms, makespan_ms "
            f"{result.makespan_ms:.0f}.", "", "| client part (cumulative) | ms | % of wall |",
            "|---|---:|---:|"]
    for path, name, label in PROFILED:
        if (path, name) in cumulative:
            ms = cumulative[path, name]
            rows.append(f"| {label} | {ms:.0f} | {100 * ms / wall:.1f} |")
    own = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    rows += ["", "| most own time | calls | own ms |", "|---|---:|---:|"]
    for (path, line, name), (_, calls, tt, _, _) in own:
        where = f"{os.path.basename(path)}:{line}" if line else path
        rows.append(f"| {name} ({where}) | {calls} | {tt * 1000.0:.0f} |")
    return rows


# -- bytes -------------------------------------------------------------------------------------
def cluster_plan(wf: Workflow) -> dict[str, Placement]:
    """Every task flexible with CLUSTER; DELAYED_IO on the first upstream of each fan-in.

    DELAYED_IO owners whose waiting would deadlock (checked with the reference
    interpreter on profiled sizes) keep CLUSTER only.
    """
    place = {t: Placement(None, 1024, frozenset({Opt.CLUSTER})) for t in wf.topological_order}
    owners: dict[str, str] = {}
    for d in wf.topological_order:
        ups = wf.upstream(d)
        if len(ups) > 1 and not any(o == ups[0] for o in owners.values()):
            owners[d] = ups[0]
            place[ups[0]] = place[ups[0]].with_opts(Opt.DELAYED_IO)
    sizes = {t: p.output_bytes for t, p in profile(wf).items()}
    while True:
        try:
            run_in_memory(RunSpec.build(wf, place), lambda e: Payload(sizes[e.task]))
            return place
        except DeadlockError as exc:
            owner = next(o for d, o in owners.items() if f"ready:{d}'" in str(exc))
            place[owner] = Placement(None, 1024, frozenset({Opt.CLUSTER}))
            owners = {d: o for d, o in owners.items() if o != owner}


def traffic(workflows: dict[str, Workflow]) -> list[str]:
    rows = ["| workflow | plan | Redis traffic MB | outputs stored MB | invocations | "
            "makespan ms |", "|---|---|---:|---:|---:|---:|"]
    key = new_key()
    with EmbeddedRedis() as server, LocalFaaS(server.url, key) as faas:
        for name, wf in workflows.items():
            expected = run_local(wf)
            for label, plan in (("all flexible", None),
                                ("CLUSTER + DELAYED_IO", cluster_plan(wf))):
                run(wf, plan, server.url, hmac_key=key, invoker=faas, timeout_s=600)  # warm
                result = run(wf, plan, server.url, hmac_key=key, invoker=faas, timeout_s=600)
                assert _same(result.result, expected)
                rows.append(f"| {name} | {label} | {result.redis_net_bytes / 1e6:.2f} | "
                            f"{result.trace.storage_bytes / 1e6:.2f} | "
                            f"{result.trace.invocations} | {result.makespan_ms:.0f} |")
    return rows


def commands(leaves: int, leaf_size: int, top: int = 12) -> list[str]:
    """Redis commands per task of one warm run (``INFO commandstats``, reset before it;
    commands run inside Lua scripts count too), by command, most frequent first."""
    import redis

    wf = tree_reduction(leaves=leaves, leaf_size=leaf_size)
    key = new_key()
    with EmbeddedRedis() as server, LocalFaaS(server.url, key, max_running=SLOTS,
                                              max_processes=SLOTS) as faas:
        run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)  # warm-up
        sync = redis.Redis.from_url(server.url)
        sync.config_resetstat()
        result = run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=900)
        stats: dict[str, Any] = sync.info("commandstats")  # type: ignore[assignment]
        # Socket reads the server processed: one per request it received, a pipeline
        # usually in one, so about the round trips of all clients (INFO's own included).
        reads = int(sync.info("stats")["total_reads_processed"])  # type: ignore[index]
        sync.close()
    n = len(wf)
    calls = sorted(((name.removeprefix("cmdstat_"), int(v["calls"]))
                    for name, v in stats.items()), key=lambda kv: -kv[1])
    total = sum(c for _, c in calls)
    rows = [f"Tree reduction, {leaves} leaves ({n:,} tasks, {result.trace.invocations} "
            f"invocations), LocalFaaS {SLOTS} processes, one warm run: {total:,} commands, "
            f"{total / n:.2f} per task; {reads:,} requests read by the server (round "
            f"trips), {reads / n:.2f} per task.", "", "| command | calls | per task |",
            "|---|---:|---:|"]
    rows += [f"| {name} | {c:,} | {c / n:.2f} |" for name, c in calls[:top]]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["overhead", "gap", "profile", "commands", "bytes",
                                      "all"],
                   default="all", help="'profile' (cProfile of one warm run's client) and "
                   "'commands' (Redis commands per task) are not part of 'all'")
    p.add_argument("--leaves", type=int, action="append", default=None,
                   help="leaves of one tree size (repeatable; default 128, 512, 2048)")
    p.add_argument("--leaf-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--on-dask-max-tasks", type=int, default=1100,
                   help="largest tree run by faasplan on Dask (DaskInvoker; default 1100)")
    args = p.parse_args(argv)
    sizes = args.leaves or [128, 512, 2048]
    out: list[str] = []
    summary = ""
    if args.part in ("overhead", "all"):
        with contextlib.ExitStack() as stack:
            systems = Systems(stack)
            results = [compare(systems, n, args.leaf_size, args.repeats,
                               args.on_dask_max_tasks) for n in sizes]
        out += ["## faasplan vs Dask, like for like", "",
                *overhead_rows(results, args.repeats), ""]
        summary = summary_line(max(results, key=lambda r: r["tasks"]))
    if args.part in ("gap", "all"):
        out += ["## run() wall time vs makespan_ms", "",
                *gap(sizes[len(sizes) // 2], args.leaf_size, args.repeats), ""]
    if args.part == "profile":
        out += ["## Where the client's time goes (cProfile)", "",
                *client_profile(sizes[len(sizes) // 2], args.leaf_size), ""]
    if args.part == "commands":
        out += ["## Redis commands per task", "",
                *commands(sizes[len(sizes) // 2], args.leaf_size), ""]
    if args.part in ("bytes", "all"):
        leaves = min(max(sizes), 1024)
        out += ["## Bytes through Redis", "",
                *traffic({f"tree_reduction({leaves}, 1024)":
                          tree_reduction(leaves=leaves, leaf_size=1024),
                          "gemm(256, 64)": gemm(256, 64)}), ""]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out.append(f"Machine: {os.cpu_count()} CPUs, load average at the end {load}; "
               f"Python {sys.version.split()[0]}.")
    if summary:
        out += ["", summary]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
