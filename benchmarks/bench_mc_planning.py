"""Planning time with Monte-Carlo scoring: adaptive final replicates against a fixed count.

A plan's final score simulates replicates in batches until the SLA quantile is settled
(``faasplan.experiments.planning.quantile_settled``) or the bound for the workflow's size
is reached. This script plans each workload twice in the same run, once with that rule and
once with the earlier fixed rule (at least 20 final replicates, no early stop), with a
predictor fitted on simulated past runs of the workload, and prints wall-clock planning
time, replicates used and the predicted p95 of both, plus their ratios.

Workloads: the real traces shipped in ``faasplan.data`` (no ``../shared`` needed) and the
synthetic layered DAGs of ``bench_planners.py``.

Usage (from the project root)::

    python benchmarks/bench_mc_planning.py
    python benchmarks/bench_mc_planning.py --planners wukong,heft --layered 1000,10000
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import faasplan
from faasplan.experiments import planning
from faasplan.experiments.planning import MonteCarloEvaluator, fit_history, training_history
from faasplan.planners import run_planner
from faasplan.simulator import GroundTruth, Platform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_planners import layered

TRACES = ("epigenomics_983t", "montage_1738t")


@contextlib.contextmanager
def fixed_rule() -> Iterator[None]:
    """The earlier rule: at least 20 final replicates, never stopping early."""
    saved = planning.MC_FINAL_REPLICATES, planning.MC_QUANTILE_TOLERANCE
    planning.MC_FINAL_REPLICATES, planning.MC_QUANTILE_TOLERANCE = (20, 64), -1.0
    try:
        yield
    finally:
        planning.MC_FINAL_REPLICATES, planning.MC_QUANTILE_TOLERANCE = saved


def plan_once(wf: faasplan.Workflow, predictor: object, platform: Platform, planner: str,
              seed: int) -> tuple[float, int, float]:
    started = time.perf_counter()
    ev = MonteCarloEvaluator(wf, predictor, platform, "p95", seed)  # type: ignore[arg-type]
    plan = run_planner(planner, wf, predictor, platform, sla="p95", seed=seed,  # type: ignore[arg-type]
                       evaluate=ev, history=True)
    plan.validate(wf)
    elapsed = time.perf_counter() - started
    return elapsed, len(plan.predicted.replicate_makespans_ms), plan.predicted_makespan_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="wukong,uniform,heft")
    parser.add_argument("--layered", default="1000,10000",
                        help="sizes of synthetic layered DAGs ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    platform = Platform()
    cases: list[tuple[str, faasplan.Workflow]] = []
    for name in TRACES:
        cases.append((name, faasplan.load_wfformat(faasplan.data.trace_path(name))))
    for n in (int(x) for x in args.layered.split(",") if x):
        cases.append((f"layered_{n}", layered(n)))
    print(f"{'workload':<18} {'tasks':>6} {'planner':<8} {'fixed s':>8} {'adaptive s':>10} "
          f"{'time ratio':>10} {'K fixed':>7} {'K adapt':>7} {'p95 ratio':>9}", flush=True)
    ratios = []
    for name, wf in cases:
        truth = GroundTruth(wf, platform, noise=0.1)
        history = training_history(wf, platform, truth, 4, seed=args.seed + 7)
        predictor = fit_history(wf, history, platform)
        for planner in args.planners.split(","):
            # Alternate the order so neither rule always meets a warmer machine.
            adaptive = plan_once(wf, predictor, platform, planner, args.seed)
            with fixed_rule():
                fixed = plan_once(wf, predictor, platform, planner, args.seed)
            ratio = adaptive[0] / fixed[0]
            ratios.append(ratio)
            print(f"{name:<18} {len(wf):>6} {planner:<8} {fixed[0]:>8.2f} {adaptive[0]:>10.2f} "
                  f"{ratio:>10.2f} {fixed[1]:>7} {adaptive[1]:>7} "
                  f"{adaptive[2] / fixed[2]:>9.3f}", flush=True)
    print(f"mc planning: adaptive / fixed planning time median {np.median(ratios):.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}) over {len(ratios)} plans")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
