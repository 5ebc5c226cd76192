"""Conformance at scale: random valid plans on random DAGs, and every built-in workload under
every planner, through the in-memory reference, the simulator and the Redis runtime.

Run from the project root::

    python benchmarks/bench_conformance.py               # 200 random cases + the workloads
    python benchmarks/bench_conformance.py --cases 20    # a quicker look

Prints one line per failing case (with its seed, to reproduce it with
``faasplan.conformance.cases.random_case(seed)``), then the totals: cases, decisions
compared, unexplained mismatches (the target is 0) and timing-dependent differences
excused (:data:`faasplan.trace.TIMING_DEPENDENT`).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence

import faasplan
from faasplan import workloads
from faasplan.conformance import COMPARED, check
from faasplan.conformance.cases import random_case
from faasplan.planners import Plan
from faasplan.runtime.embedded import EmbeddedRedis

WORKLOADS = ("wordcount", "gemm", "tree_reduction", "image_pipeline", "montage_like")
PLANNERS = (None, "wukong", "wukong-opt", "uniform", "uniform-opt", "non-uniform-opt", "heft")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="random cases (default 200)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-tasks", type=int, default=12)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    with EmbeddedRedis() as server:
        jobs: list[tuple[str, object, object]] = []
        for name in WORKLOADS:
            wf = getattr(workloads, name)()
            for planner in PLANNERS:
                plan = None if planner is None else faasplan.plan(wf, planner)
                jobs.append((f"{name}/{planner or 'flexible'}", wf, plan))
        for seed in range(args.first_seed, args.first_seed + args.cases):
            wf, placements = random_case(seed, max_tasks=args.max_tasks)
            Plan("random", placements).validate(wf)
            jobs.append((f"random seed={seed}", wf, placements))
        for i, (label, wf, plan) in enumerate(jobs, 1):
            report = check(wf, plan, redis=server.url, timeout_s=120)  # type: ignore[arg-type]
            totals["cases"] += 1
            totals["tasks"] += len(wf)  # type: ignore[arg-type]
            totals["decisions"] += len(wf) * len(COMPARED)  # type: ignore[arg-type]
            totals["mismatches"] += len(report.mismatches)
            totals["excused"] += report.excused
            for m in report.mismatches:
                fields[m.field] += 1
            if not report.ok:
                print(f"FAILED {label}\n{report}", flush=True)
            if i % 25 == 0:
                print(f"<!-- {i}/{len(jobs)} cases, {time.perf_counter() - started:.0f} s -->",
                      flush=True)
    elapsed = time.perf_counter() - started
    print(f"\ncases: {totals['cases']} ({len(WORKLOADS) * len(PLANNERS)} workload plans, "
          f"{args.cases} random plans on random DAGs), tasks: {totals['tasks']}, decisions "
          f"compared per driver: {totals['decisions']}")
    print(f"unexplained mismatches: {totals['mismatches']}"
          + (f" ({dict(fields)})" if fields else ""))
    print(f"timing-dependent differences excused: {totals['excused']}")
    print(f"time: {elapsed:.0f} s")
    return 1 if totals["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
