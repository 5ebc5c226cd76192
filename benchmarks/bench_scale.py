"""Scale: simulate a 100k-task workflow once, and report time and peak memory.

Each case runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its
own: building the workflow, one warm-up-free :meth:`Simulator.run` of the WUKONG plan (every
task flexible) on the default platform, seed 0. Times are CPU seconds of the child
(``time.process_time``) and wall seconds.

Usage (from the project root)::

    python benchmarks/bench_scale.py                    # layered 100k
    python benchmarks/bench_scale.py --tasks 50000 --tasks 100000
    python benchmarks/bench_scale.py --wfchef montage   # also a WfChef montage instance

The last line is ``scale: N tasks simulated in T s CPU, peak P MB``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def child(kind: str, tasks: int) -> dict[str, float | int | str]:
    """Build and simulate one case in this process; its measurements."""
    sys.path.insert(0, str(HERE.parent))
    from faasplan.simulator import Simulator

    started = time.process_time()
    wall = time.perf_counter()
    if kind == "layered":
        from bench_simulator import layered_dag

        wf = layered_dag(tasks)
    else:
        from faasplan.workloads import wfchef

        wf = wfchef(kind, tasks, seed=0)
    built = time.process_time() - started
    sim = Simulator(wf)
    before = time.process_time()
    before_wall = time.perf_counter()
    trace = sim.run(None, seed=0)
    run_cpu = time.process_time() - before
    run_wall = time.perf_counter() - before_wall
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"case": f"{kind} {len(wf)}", "tasks": len(wf), "build_s": round(built, 2),
            "run_cpu_s": round(run_cpu, 2), "run_wall_s": round(run_wall, 2),
            "total_wall_s": round(time.perf_counter() - wall, 2), "peak_mb": round(peak_mb),
            "makespan_s": round(trace.makespan_ms / 1000.0, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, action="append",
                        help="layered DAG size (repeatable; default 100000)")
    parser.add_argument("--wfchef", action="append", default=[],
                        help="also a WfChef recipe at the same size (needs the wfcommons extra)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    sizes = args.tasks or [100_000]
    rows = []
    for n in sizes:
        for kind in ["layered", *args.wfchef]:
            out = subprocess.run([sys.executable, str(HERE), "--child", kind, str(n)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{kind} {n}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['case']:>18}: build {row['build_s']} s, Simulator.run "
                  f"{row['run_cpu_s']} s CPU ({row['run_wall_s']} s wall), peak "
                  f"{row['peak_mb']} MB, makespan {row['makespan_s']} s", flush=True)
    big = max(rows, key=lambda r: int(r["tasks"]))
    print(f"scale: {big['tasks']} tasks simulated in {big['run_cpu_s']} s CPU, "
          f"peak {big['peak_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
