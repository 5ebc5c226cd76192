"""Benchmark of the Redis runtime: per-task overhead against Dask, and bytes through Redis.

Part ``overhead``: a tree reduction with tiny tasks (default 1024 leaves, 2047 tasks) on
warm worker processes, against Dask distributed on a ``LocalCluster`` of 2 worker
processes in the same run. Both get 2 execution slots (``LocalFaaS(max_running=2)``;
Dask: 2 processes x 1 thread). Per-task overhead is ``(makespan x 2 - sum of task
execution times) / tasks``: the time a slot spends per task on anything but the task.

Part ``bytes``: network traffic of the Redis server (``INFO stats``) for a tree reduction
and GEMM, all tasks flexible vs. every task with CLUSTER (and DELAYED_IO on one upstream
of each fan-in).

Run::

    python benchmarks/bench_runtime.py            # both parts, markdown on stdout
    python benchmarks/bench_runtime.py --part overhead --leaves 256 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from faasplan.runtime import LocalFaaS, new_key, run
from faasplan.runtime.embedded import EmbeddedRedis
from faasplan.worker import Opt, Payload, Placement, RunSpec
from faasplan.worker.inmemory import DeadlockError, run_in_memory
from faasplan.workflow import TaskNode, Workflow, map_leaves
from faasplan.workflow.local import profile, run_local
from faasplan.workloads import gemm, tree_reduction

SLOTS = 2


def _same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else bool(a == b)


# -- overhead --------------------------------------------------------------------------------
def faasplan_times(wf: Workflow, repeats: int, max_running: int) -> tuple[list[float], float]:
    """Makespans (ms) of ``repeats`` runs on warm workers, and the tasks' summed exec ms."""
    key = new_key()
    expected = run_local(wf)
    makespans, exec_ms = [], 0.0
    with EmbeddedRedis() as server, LocalFaaS(server.url, key, max_running=max_running,
                                              max_processes=4 * max_running) as faas:
        run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=600)  # warm-up
        for _ in range(repeats):
            result = run(wf, None, server.url, hmac_key=key, invoker=faas, timeout_s=600)
            assert _same(result.result, expected), "faasplan returned a wrong result"
            makespans.append(result.makespan_ms)
            exec_ms = float(result.trace.tasks["exec_ms"].sum())
    return makespans, exec_ms


def dask_times(wf: Workflow, repeats: int) -> list[float]:
    """Wall-clock ms of ``repeats`` computations of ``wf`` on a 2-process LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    expected = run_local(wf)
    out = []
    with LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for attempt in range(repeats + 1):  # the first computation warms the workers up
            sink = _dask_graph(wf, prefix=f"r{attempt}-", delayed=dask.delayed)
            start = time.perf_counter()
            value = client.compute(sink).result()
            elapsed = (time.perf_counter() - start) * 1000.0
            assert _same(value, expected), "dask returned a wrong result"
            if attempt:
                out.append(elapsed)
    return out


def _dask_graph(wf: Workflow, prefix: str, delayed: Callable[..., Any]) -> Any:
    nodes: dict[str, Any] = {}
    for tid in wf.topological_order:
        node = wf.tasks[tid]
        args, kwargs = map_leaves((node.args, node.kwargs),
                                  lambda n: nodes[wf.id_of(n)], TaskNode)
        nodes[tid] = delayed(node.func.fn, pure=False)(*args, **kwargs,
                                                       dask_key_name=prefix + tid)
    return nodes[wf.sinks[0]]


def overhead(leaves: int, leaf_size: int, repeats: int) -> list[str]:
    wf = tree_reduction(leaves=leaves, leaf_size=leaf_size)
    n = len(wf)
    ours, exec_ms = faasplan_times(wf, repeats, max_running=SLOTS)
    wide, _ = faasplan_times(wf, repeats, max_running=4 * SLOTS)
    theirs = dask_times(wf, repeats)
    local_exec = sum(p.exec_ms for p in profile(wf).values())

    def per_task(makespan: float, busy: float) -> float:
        return (makespan * SLOTS - busy) / n

    rows = [
        f"Tree reduction, {leaves} leaves x {leaf_size} float64 ({n} tasks), median of "
        f"{repeats} warm runs, 2 execution slots:",
        "",
        "| system | makespan ms | ms per task (wall) | per-task overhead ms |",
        "|---|---:|---:|---:|",
    ]
    m_ours, m_wide, m_dask = (statistics.median(x) for x in (ours, wide, theirs))
    rows.append(f"| faasplan runtime (LocalFaaS, max_running=2) | {m_ours:.0f} | "
                f"{m_ours / n:.2f} | {per_task(m_ours, exec_ms):.2f} |")
    rows.append(f"| faasplan runtime (LocalFaaS, max_running=8) | {m_wide:.0f} | "
                f"{m_wide / n:.2f} | {per_task(m_wide, exec_ms):.2f} |")
    rows.append(f"| Dask distributed LocalCluster (2 processes x 1 thread) | {m_dask:.0f} | "
                f"{m_dask / n:.2f} | {per_task(m_dask, local_exec):.2f} |")
    rows += ["", f"Overhead ratio faasplan/Dask (2 slots each): "
             f"{per_task(m_ours, exec_ms) / per_task(m_dask, local_exec):.1f}x "
             f"(all runs, ms: faasplan {[round(x) for x in ours]}, "
             f"Dask {[round(x) for x in theirs]})"]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["overhead", "bytes", "all"], default="all")
    p.add_argument("--leaves", type=int, default=1024)
    p.add_argument("--leaf-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    out: list[str] = []
    if args.part in ("overhead", "all"):
        out += ["## Per-task overhead", "", *overhead(args.leaves, args.leaf_size,
                                                      args.repeats), ""]
    if args.part in ("bytes", "all"):
        out += ["## Bytes through Redis", "",
                *traffic({f"tree_reduction({args.leaves}, 1024)":
                          tree_reduction(leaves=args.leaves, leaf_size=1024),
                          "gemm(256, 64)": gemm(256, 64)}), ""]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out.append(f"Machine: {os.cpu_count()} CPUs, load average at the end {load}; "
               f"Python {sys.version.split()[0]}.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
