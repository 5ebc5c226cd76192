"""Simulator throughput: simulated tasks per second, against bare SimPy events per second.

Run from the project root::

    python benchmarks/bench_simulator.py                      # every case, this code
    python benchmarks/bench_simulator.py --against ../old     # also an older checkout, same run
    python benchmarks/bench_simulator.py --profile            # cProfile of the 10k case

Cases: layered DAGs of 1k, 10k and 50k tasks, a binary tree reduction of 8,191 tasks, and
the real traces montage 1,738, epigenomics 983 and 1000genome 902 (shipped with faasplan,
or in ``../shared/traces``; a missing one is reported as missing). Every case is the
WUKONG plan (all tasks flexible) on the default :class:`~faasplan.Platform`, seed 0.

Per case: ``run s`` is the median CPU time (``time.process_time``) of ``--repeat`` calls
of :meth:`Simulator.run` on a reused :class:`Simulator` (a planner's inner loop); CPU
time, because on a shared machine wall-clock time also counts other people's work.
``events/task`` counts the entries that went through SimPy's event queue, ``calls/task``
the Python function calls (cProfile) of one run (cases up to 10k tasks: profiling
is slow, and the count per task barely depends on size); cProfile does not see the
functions of the compiled core, so with it ``calls/task`` counts only what stays Python.
The first line names the build: the compiled core, or pure Python (``setup.py``,
:mod:`faasplan._native`). ``ratio`` divides simulated tasks/s by
the rate of bare SimPy timeout events (one process yielding ``env.timeout(1)`` in a loop)
measured in the same process, so it is comparable across machines: simulated tasks per
bare SimPy event.

``--against DIR`` runs the same cases on the faasplan under ``DIR/src`` in a subprocess,
alternating with this code ``--rounds`` times, and prints per-case speed-ups (medians over
rounds) and whether the makespans are identical. ``--pure`` does the same against this
code's own Python sources (``FAASPLAN_PURE_PYTHON=1``): what compiling the core gains.

The last line is the summary ``simulator: N tasks/s, T per bare SimPy event`` (layered 10k).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from faasplan.data import trace_path  # the real traces shipped with faasplan
from faasplan.simulator import Simulation, Simulator
from faasplan.workflow import TaskFunction, TaskNode, TaskProfile, Workflow
from faasplan.workflow.wfformat import load_wfformat, synthetic_task
from faasplan.workloads import layered

HERE = Path(__file__).resolve()
SHARED_TRACES = HERE.parents[1].parent / "shared" / "traces"
TRACES = {"montage 1738": "montage_1738t", "epigenomics 983": "epigenomics_983t",
          "1000genome 902": "1000genome_902t"}
CALLS_MAX_TASKS = 10_000
def layered_dag(tasks: int, width: int = 100, seed: int = 0) -> Workflow:
    """A layered DAG: each task takes 1-3 outputs of the previous layer
    (:func:`faasplan.workloads.layered`: ~200 ms tasks, outputs 1 KiB - 1 MiB, four stages)."""
    return layered(tasks, width, seed)


def tree_dag(leaves: int = 4096, seed: int = 0) -> Workflow:
    """A binary reduction over ``leaves`` leaves (``2 * leaves - 1`` tasks).

    Leaves run ~100 ms and output 64 KiB-1 MiB (log-uniform); each ``add`` runs ~50 ms and
    outputs the size of its larger input (lognormal times, sigma 0.5).
    """
    rng = np.random.default_rng(seed)
    leaf_fn = TaskFunction(synthetic_task, name="leaf")
    add_fn = TaskFunction(synthetic_task, name="add")
    level: list[TaskNode] = []
    for i in range(leaves):
        profile = TaskProfile(float(100.0 * rng.lognormal(0.0, 0.5)),
                              int(2 ** rng.uniform(16, 20)))
        level.append(leaf_fn(task_id=f"leaf{i}", profile=profile, runtime_ms=profile.exec_ms,
                             output_bytes=profile.output_bytes))
    n = 0
    while len(level) > 1:
        nxt = []
        for a, b in zip(level[::2], level[1::2], strict=True):
            out = max(a.profile.output_bytes, b.profile.output_bytes)  # type: ignore[union-attr]
            profile = TaskProfile(float(50.0 * rng.lognormal(0.0, 0.5)), out)
            nxt.append(add_fn(a, b, task_id=f"add{n}", profile=profile,
                              runtime_ms=profile.exec_ms, output_bytes=out))
            n += 1
        level = nxt
    return Workflow(level, name=f"tree_{2 * leaves - 1}t", detect=False)


def find_trace(stem: str) -> Path | None:
    """A trace shipped with faasplan or in ``../shared/traces``, or ``None``."""
    try:
        return trace_path(stem)
    except KeyError:
        pass
    for path in (SHARED_TRACES / f"{stem}.json", SHARED_TRACES / f"{stem}.json.gz"):
        if path.is_file():
            return path
    return None


def cases(names: list[str] | None = None) -> tuple[list[tuple[str, Workflow]], list[str]]:
    """The benchmark's workflows (selected by name) and notes on the missing ones."""
    makers: dict[str, Callable[[], Workflow]] = {
        "layered 1k": lambda: layered_dag(1_000), "layered 10k": lambda: layered_dag(10_000),
        "layered 50k": lambda: layered_dag(50_000), "tree 8191": lambda: tree_dag(4096)}
    notes = []
    for name, stem in TRACES.items():
        path = find_trace(stem)
        if path is None:
            where = f"none in {SHARED_TRACES}" if SHARED_TRACES.is_dir() else \
                f"and {SHARED_TRACES} is missing"
            notes.append(f"{name}: no trace {stem!r}: none ships with faasplan, {where}")
        else:
            makers[name] = partial(load_wfformat, path)
    known = set(makers) | set(TRACES)
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise SystemExit(f"bench_simulator.py: unknown --case {', '.join(map(repr, unknown))}; "
                         f"the cases are {', '.join(map(repr, sorted(known)))}")
    chosen = [n for n in makers if names is None or n in names]
    return [(n, makers[n]()) for n in chosen], notes


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


def queue_entries(sim: Simulator) -> int:
    """Entries that went through the event queue in one run (SimPy's id counter)."""
    run = Simulation.create(sim.spec(), sim.platform, sim.behaviour,
                            np.random.default_rng(0))
    run.run()
    return next(run.env._eid)


def python_calls(sim: Simulator) -> int:
    """Python function calls of one :meth:`Simulator.run` (cProfile's count)."""
    prof = cProfile.Profile()
    prof.runcall(sim.run, seed=0)
    return int(pstats.Stats(prof).total_calls)  # type: ignore[attr-defined]


def measure(name: str, wf: Workflow, repeat: int) -> dict[str, Any]:
    """One case: median CPU time of ``repeat`` reused runs, events, calls, makespan."""
    sim = Simulator(wf)
    trace = sim.run(seed=0)  # warm-up (the Simulator's per-workflow work)
    times = []
    for _ in range(repeat):
        start = time.process_time()
        sim.run(seed=0)
        times.append(time.process_time() - start)
    calls = python_calls(sim) if len(wf) <= CALLS_MAX_TASKS else None
    return {"name": name, "tasks": len(wf), "run_s": statistics.median(times),
            "events": queue_entries(sim), "calls": calls,
            "makespan_ms": trace.makespan_ms}


def measure_all(names: list[str] | None, repeat: int) -> dict[str, Any]:
    """Every case measured by this process's faasplan, with the bare SimPy rate."""
    chosen, notes = cases(names)
    bare = statistics.median(simpy_events_per_s() for _ in range(3))
    return {"bare": bare, "notes": notes, "build": build(),
            "cases": [measure(name, wf, repeat) for name, wf in chosen]}


ENV = "FAASPLAN_PURE_PYTHON"  # faasplan._native.ENV (an older checkout has no such module)


def build() -> str:
    """Which build of the simulator's core this process runs."""
    try:
        from faasplan._native import CORE, compiled_modules, pure_python_requested
    except ImportError:
        return "pure Python (a faasplan without a compiled core)"
    compiled = compiled_modules()
    if compiled:
        return f"compiled core ({len(compiled)} of {len(CORE)} modules, mypyc)"
    return "pure Python" + (f" ({ENV}=1)" if pure_python_requested() else "")


def print_table(result: dict[str, Any]) -> None:
    """The per-case table of :func:`measure_all`."""
    bare = result["bare"]
    print(f"build: {result['build']}")
    print(f"bare SimPy: {bare:,.0f} timeout events/s (median of 3)")
    print(f"{'workflow':<16}{'tasks':>7}{'run s':>9}{'tasks/s':>10}{'ratio':>8}"
          f"{'events/task':>13}{'calls/task':>12}{'makespan s':>12}")
    for c in result["cases"]:
        rate = c["tasks"] / c["run_s"]
        print(f"{c['name']:<16}{c['tasks']:>7}{c['run_s']:>9.3f}{rate:>10,.0f}"
              f"{rate / bare:>8.4f}{c['events'] / c['tasks']:>13.2f}"
              f"{per_task(c['calls'], c['tasks']):>12}{c['makespan_ms'] / 1000:>12.3f}")
    for note in result["notes"]:
        print(f"missing: {note}")


def per_task(count: int | None, tasks: int) -> str:
    """``count / tasks`` to one decimal, or ``-`` when not counted."""
    return "-" if count is None else f"{count / tasks:.1f}"


def run_child(src: Path | None, names: list[str] | None, repeat: int, *,
              pure: bool = False) -> dict[str, Any]:
    """:func:`measure_all` in a fresh interpreter importing faasplan from ``src`` (with
    ``pure``: the Python sources of the compiled core, ``FAASPLAN_PURE_PYTHON=1``)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if pure:
        env[ENV] = "1"
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(HERE), "--json", "--repeat", str(repeat)]
    for name in names or ():
        cmd += ["--case", name]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(against: Path | None, names: list[str] | None, repeat: int, rounds: int) -> None:
    """This code against the faasplan under ``against`` (``None``: against this code's
    Python sources), alternating, medians of rounds."""
    mine = HERE.parents[1] / "src"
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for _ in range(rounds):
        if against is None:
            runs["old"].append(run_child(mine, names, repeat, pure=True))
        else:
            runs["old"].append(run_child(against / "src", names, repeat))
        runs["new"].append(run_child(mine, names, repeat))
    print(f"old: {runs['old'][0]['build']}; new: {runs['new'][0]['build']}")
    print(f"{'workflow':<16}{'old s':>8}{'new s':>8}{'speed-up':>10}{'old ev/t':>10}"
          f"{'new ev/t':>10}{'old calls/t':>13}{'new calls/t':>13}  same makespan")
    for i, case in enumerate(runs["new"][0]["cases"]):
        old = statistics.median(r["cases"][i]["run_s"] for r in runs["old"])
        new = statistics.median(r["cases"][i]["run_s"] for r in runs["new"])
        o, n = runs["old"][0]["cases"][i], case
        same = o["makespan_ms"] == n["makespan_ms"]
        rel = abs(o["makespan_ms"] - n["makespan_ms"]) / o["makespan_ms"]
        print(f"{n['name']:<16}{old:>8.3f}{new:>8.3f}{old / new:>9.2f}x"
              f"{o['events'] / o['tasks']:>10.2f}{n['events'] / n['tasks']:>10.2f}"
              f"{per_task(o['calls'], o['tasks']):>13}{per_task(n['calls'], n['tasks']):>13}  "
              f"{'yes' if same else f'no (rel {rel:.1e})'}")
    bare_old = statistics.median(r["bare"] for r in runs["old"])
    bare_new = statistics.median(r["bare"] for r in runs["new"])
    print(f"bare SimPy in those runs: {bare_old:,.0f} (old) / {bare_new:,.0f} (new) events/s; "
          f"{rounds} rounds alternating, median of {repeat} runs each")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median kept)")
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    parser.add_argument("--profile", action="store_true", help="cProfile the 10k case")
    parser.add_argument("--against", type=Path, help="checkout of an older faasplan")
    parser.add_argument("--pure", action="store_true",
                        help="also this code's Python sources (FAASPLAN_PURE_PYTHON=1) against "
                        "its compiled core, alternating, as with --against")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternations with --against/--pure")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.json:
        print(json.dumps(measure_all(args.case, args.repeat)))
        return 0
    if args.against is not None:
        compare(args.against, args.case, args.repeat, args.rounds)
    if args.pure:
        compare(None, args.case, args.repeat, args.rounds)
    result = measure_all(args.case, args.repeat)
    print_table(result)
    if args.profile:  # the 10k case, whatever --case chose
        wf = layered_dag(10_000)
        sim = Simulator(wf)
        sim.run()
        prof = cProfile.Profile()
        prof.runcall(sim.run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if not result["cases"]:
        print("simulator: no case could be measured (see 'missing' above)")
        return 1
    summary = next((c for c in result["cases"] if c["name"] == "layered 10k"),
                   result["cases"][0])
    rate = summary["tasks"] / summary["run_s"]
    print(f"simulator: {rate:,.0f} tasks/s, {rate / result['bare']:.4f} per bare SimPy event "
          f"({summary['name']}, Simulator.run reused, CPU time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
