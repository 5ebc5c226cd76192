"""Simulator throughput: simulated tasks per second, against bare SimPy events per second.

Run from the project root::

    python benchmarks/bench_simulator.py            # 1k and 10k layered DAGs, montage_1738t
    python benchmarks/bench_simulator.py --profile  # also print the top of a cProfile

Times are CPU seconds of this process (``time.process_time``), best of ``--repeat``:
on a shared machine wall-clock time also counts other people's work. The ratio column
divides simulated tasks/s by the rate of bare SimPy timeout events (one process yielding
``env.timeout(1)`` in a loop) measured the same way in the same run, so it is comparable
across machines: simulated tasks per bare SimPy event.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import simpy

from faasplan.data import trace_path  # the real traces shipped with faasplan
from faasplan.simulator import Simulator
from faasplan.workflow import TaskFunction, TaskNode, TaskProfile, Workflow
from faasplan.workflow.wfformat import load_wfformat, synthetic_task


def layered_dag(tasks: int, width: int = 100, seed: int = 0) -> Workflow:
    """A layered DAG: each task takes 1-3 outputs of the previous layer.

    Execution times are lognormal around 200 ms, outputs 1 KiB - 1 MiB (log-uniform);
    four function names (one per "stage kind") rotate by layer.
    """
    rng = np.random.default_rng(seed)
    functions = [TaskFunction(synthetic_task, name=f"stage{k}") for k in range(4)]
    layers: list[list[TaskNode]] = []
    n = 0
    while n < tasks:
        k = len(layers)
        fn = functions[k % len(functions)]
        layer = []
        for _ in range(min(width, tasks - n)):
            parents: list[TaskNode] = []
            if layers:
                prev = layers[-1]
                count = min(len(prev), int(rng.integers(1, 4)))
                parents = [prev[i] for i in rng.choice(len(prev), size=count, replace=False)]
            profile = TaskProfile(float(200.0 * rng.lognormal(0.0, 0.5)),
                                  int(2 ** rng.uniform(10, 20)))
            layer.append(fn(*parents, task_id=f"t{n}", profile=profile,
                            runtime_ms=profile.exec_ms, output_bytes=profile.output_bytes))
            n += 1
        layers.append(layer)
    children = {id(p) for layer in layers for node in layer for p in node.upstream}
    sinks = [node for layer in layers for node in layer if id(node) not in children]
    return Workflow(sinks, name=f"layered_{tasks}t", detect=False)


def simpy_events_per_s(events: int = 200_000) -> float:
    """Rate of bare SimPy timeout events (one process, ``yield env.timeout(1)``)."""
    env = simpy.Environment()

    def proc(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(events):
            yield env.timeout(1)

    env.process(proc(env))
    start = time.process_time()
    env.run()
    return events / (time.process_time() - start)


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Least CPU time and least wall-clock time of ``repeat`` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (best kept)")
    parser.add_argument("--profile", action="store_true", help="cProfile the 10k case")
    args = parser.parse_args(argv)

    cases = [("layered 1k", layered_dag(1_000)), ("layered 10k", layered_dag(10_000))]
    montage = trace_path("montage_1738t")
    if montage.exists():
        cases.append(("montage_1738t", load_wfformat(montage)))
    rates = [simpy_events_per_s() for _ in range(3)]
    bare = statistics.median(rates)
    print(f"bare SimPy: {bare:,.0f} timeout events/s (median of 3)")
    print(f"{'workflow':<15}{'tasks':>7}{'simulate s':>12}{'wall s':>8}{'tasks/s':>10}"
          f"{'ratio':>8}{'run only s':>12}{'makespan s':>12}")
    for name, wf in cases:
        sim = Simulator(wf)
        whole, wall = best_of(lambda wf=wf: Simulator(wf).run(seed=0), args.repeat)
        run_only, _ = best_of(lambda sim=sim: sim.run(seed=0), args.repeat)
        makespan = sim.run(seed=0).makespan_ms / 1000.0
        rate = len(wf) / whole
        print(f"{name:<15}{len(wf):>7}{whole:>12.3f}{wall:>8.3f}{rate:>10,.0f}"
              f"{rate / bare:>8.4f}{run_only:>12.3f}{makespan:>12.1f}")
    if args.profile:
        wf = cases[1][1]
        sim = Simulator(wf)
        prof = cProfile.Profile()
        prof.runcall(sim.run)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
