"""DAG bytes fetched per run: the parts of the tasks each worker runs, not the whole DAG.

Run from the project root::

    python benchmarks/bench_dagbytes.py                       # 50k simulated + 2k real
    python benchmarks/bench_dagbytes.py --tasks 10000 --runtime-tasks 0   # simulation only

Simulated case: the layered DAG of ``bench_simulator.py`` (``--tasks`` tasks, width 100,
four functions), WUKONG plan (every task flexible), default platform, seed 0. Almost
every worker of it is started by reference: the subDAG below any task but the last
layers is far above the 64 KiB inline threshold.

Printed per run:

* ``encoded DAG``: the size of the whole encoded DAG (:func:`faasplan.workflow.codec.encode`);
* ``before``: what fetching the whole DAG in every by-reference worker moved, computed as
  by-reference invocations x encoded DAG (what the worker logic did before DAG parts);
* ``requested``: the stored size of every DAG part a worker asked for (each worker: the
  record of each task it runs and each distinct function's code);
* ``transferred``: what moved, less than requested when a warm sandbox already held a
  part for the run;
* ``inline``: subDAG bytes carried inside invocations (no fetch), for completeness.

Real-runtime check (``--runtime-tasks``, default 2,000; 0 skips it): the same kind of DAG
on the local FaaS emulator with a private embedded Redis, then simulated with the same
spec, under two plans. Printed: both drivers' DAG bytes from their decision logs, and the
parts fetched are checked to be parts of the tasks each worker ran.

* ``one planned worker per task``: every worker runs one known task, so the bytes
  requested do not depend on timing and must be equal in both drivers (checked);
* ``WUKONG``: which worker runs a fan-in is timing-dependent (it is raced), and with it
  which tasks run on the few inline workers and which function code a worker needs, so
  requested bytes may differ by a few tasks' parts.

Transferred bytes depend on which sandboxes were warm in each driver.

The last line is the summary ``dagbytes: N tasks, X fetched = R x the encoded DAG
(whole DAG per worker: Y)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_simulator import layered_dag

from faasplan.simulator import Simulation, Simulator
from faasplan.trace.decisions import dag_bytes
from faasplan.worker import Placement, RunSpec, is_dag_part
from faasplan.worker.log import Event
from faasplan.workflow.codec import TASK_PART_PREFIX, encode


def human(nbytes: float) -> str:
    """``nbytes`` with a binary-free decimal unit (kB, MB, GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes:.0f} B"


def summarize(log: list[Event], spec: RunSpec) -> dict[str, int]:
    """DAG byte counts of one run's decision log."""
    requested, transferred = dag_bytes(log, spec)
    sizes = {key: n for tid in spec.order for key, n in spec.task_parts(tid)}
    records = sum(sizes[ev.key] for ev in log if ev.kind == "fetch" and ev.key is not None
                  and ev.key.startswith(TASK_PART_PREFIX))
    invokes = [ev for ev in log if ev.kind == "invoke" and ev.info in ("inline", "ref")]
    return {"requested": requested, "transferred": transferred, "records": records,
            "by_ref": sum(ev.info == "ref" for ev in invokes),
            "inline_invocations": sum(ev.info == "inline" for ev in invokes),
            "inline": sum(spec.subdag_nbytes(ev.task) for ev in invokes
                          if ev.info == "inline" and ev.task is not None)}


def check_follow_tasks(log: list[Event], spec: RunSpec) -> None:
    """Fail unless every part a worker fetched is a part of a task it executed."""
    ran: dict[str, set[str]] = {}
    for ev in log:
        if ev.kind == "execute" and ev.task is not None:
            ran.setdefault(ev.worker, set()).add(ev.task)
    for ev in log:
        if ev.kind == "fetch" and ev.key is not None and is_dag_part(ev.key):
            own = {k for t in ran.get(ev.worker, ()) for k, _ in spec.task_parts(t)}
            if ev.key not in own:
                raise AssertionError(f"{ev.worker} fetched {ev.key}, not a part of its tasks")


def report(name: str, counts: dict[str, int], encoded: int) -> None:
    """Print one run's numbers."""
    before = counts["by_ref"] * encoded
    print(f"  {name}: {counts['by_ref']:,} workers by reference, "
          f"{counts['inline_invocations']:,} inline")
    print(f"    before (whole DAG per by-reference worker): {human(before)} "
          f"= {before / encoded:,.0f} x the encoded DAG")
    print(f"    requested: {human(counts['requested'])} = "
          f"{counts['requested'] / encoded:.2f} x (task records {human(counts['records'])})")
    print(f"    transferred: {human(counts['transferred'])} = "
          f"{counts['transferred'] / encoded:.2f} x the encoded DAG")
    print(f"    inline subDAGs carried in invocations: {human(counts['inline'])}")


def simulated(tasks: int) -> tuple[dict[str, int], int, float]:
    """Simulate the layered DAG of ``tasks`` tasks under WUKONG; its counts and sizes."""
    wf = layered_dag(tasks)
    encoded = encode(wf).nbytes
    sim = Simulator(wf, log=True)
    t0 = time.process_time()
    trace = sim.run(None, seed=0)
    cpu = time.process_time() - t0
    spec = sim.spec(None)
    log = list(trace.log)
    check_follow_tasks(log, spec)
    return summarize(log, spec), encoded, cpu


def real_check(tasks: int, placements: Any) -> dict[str, Any]:
    """Run the layered DAG under ``placements`` (``None``: WUKONG) on the emulator, then
    simulate the same spec; both drivers' counts."""
    import numpy as np

    from faasplan.platform import Platform
    from faasplan.runtime import run
    from faasplan.runtime.manifest import prepare_run, resolve_placements
    from faasplan.simulator.behaviour import GroundTruth
    from faasplan.worker import WorkerOptions

    wf = layered_dag(tasks)
    encoded = encode(wf).nbytes
    place = resolve_placements(wf, placements)
    t0 = time.perf_counter()
    result = run(wf, place, timeout_s=900.0)
    wall = time.perf_counter() - t0
    spec = prepare_run(wf, place, run_id="bench", planner="bench", options=WorkerOptions(),
                       lease_ms=3000, stream_chunk_bytes=256 * 1024).spec
    real_log = list(result.trace.log)
    check_follow_tasks(real_log, spec)
    sim = Simulation.create(spec, Platform(), GroundTruth(wf, Platform()),
                            np.random.default_rng(0), log=True).run()
    sim_log = list(sim.log or ())
    check_follow_tasks(sim_log, spec)
    return {"encoded": encoded, "wall_s": wall, "runtime": summarize(real_log, spec),
            "simulator": summarize(sim_log, spec)}


def one_worker_per_task(tasks: int) -> dict[str, Placement]:
    """A plan of single-task planned workers for the layered DAG of ``tasks`` tasks."""
    return {tid: Placement(f"w-{tid}", 1024) for tid in layered_dag(tasks).topological_order}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the numbers and the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="simulated DAG size")
    parser.add_argument("--runtime-tasks", type=int, default=2_000,
                        help="DAG size of the real-runtime check (0: skip it)")
    args = parser.parse_args(argv)

    print(f"simulated: layered DAG of {args.tasks:,} tasks, WUKONG plan, seed 0")
    counts, encoded, cpu = simulated(args.tasks)
    print(f"  encoded DAG: {human(encoded)} (simulated in {cpu:.1f} s CPU)")
    report("simulator", counts, encoded)

    if args.runtime_tasks > 0:
        n = args.runtime_tasks
        for name, plan, exact in (("one planned worker per task", one_worker_per_task(n), True),
                                  ("WUKONG", None, False)):
            print(f"real runtime: layered DAG of {n:,} tasks on the local emulator (embedded "
                  f"Redis), plan {name}, and the simulator on the same spec")
            real = real_check(n, plan)
            print(f"  encoded DAG: {human(real['encoded'])} (real run {real['wall_s']:.1f} s)")
            for driver in ("runtime", "simulator"):
                report(driver, real[driver], real["encoded"])
            got = {d: real[d]["requested"] for d in ("runtime", "simulator")}
            same = got["runtime"] == got["simulator"]
            print(f"  DAG bytes requested: runtime {got['runtime']:,} B, simulator "
                  f"{got['simulator']:,} B ({'equal' if same else 'different'}"
                  f"{'' if exact else ', timing-dependent under this plan'})")
            if exact and not same:
                return 1

    before = counts["by_ref"] * encoded
    print(f"dagbytes: {args.tasks:,} tasks, {human(counts['transferred'])} fetched = "
          f"{counts['transferred'] / encoded:.2f} x the encoded DAG "
          f"(whole DAG per worker: {human(before)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
