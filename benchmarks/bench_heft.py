"""HEFT's cost: faasplan's ``heft`` (both policies) against SAGA's HEFT on the same predictions.

Run from the project root::

    python benchmarks/bench_heft.py                      # shipped traces, ../shared, layered
    python benchmarks/bench_heft.py --workloads montage_58t layered_5000 --saga-budget 60
    python benchmarks/bench_heft.py --saga-budget 60 --notes   # which schedule heft kept

For every workload, predictors are fitted on ``--training-runs`` simulated past runs under
the ground truth (:func:`faasplan.experiments.planning.training_history`, 10 % execution
noise). Then, with those predictions and one Monte-Carlo evaluator (common random numbers,
the planners' default), three plans are made at the p95 SLA:

* ``heft`` with ``policy="finish"``: classic HEFT, the earliest finish (the earlier default);
* ``heft`` with ``policy="cost"``: billed idle time and start-ups priced (the default);
* ``saga:HEFT``: SAGA's HEFT on a network of as many nodes as the DAG's width, its nodes
  cut into planned workers that run SAGA's sequences (``faasplan.planners.saga``).

Reported per plan: predicted p95 makespan and mean cost (the evaluator's final score),
planned workers opened (for SAGA, with the nodes its schedule used), sandboxes (the cold
starts of the predicted run: later workers reuse warm sandboxes), and planning time; per
workload the DAG's width (its largest antichain, :func:`faasplan.planners.heft.antichain_width`:
the most tasks that can run at once) and, as *levels*, the most tasks at one depth (the
lower bound of the width that SAGA's network is sized by);
ratios are against ``saga:HEFT`` (or, when SAGA exceeds its time budget, the ``finish``
policy). The targets checked at the end (issue "HEFT that stops paying for idle
workers"): cost <= SAGA HEFT's at p95 within +-2 %, and at most as many workers as the
DAG's width.

Workloads: the traces shipped in ``faasplan.data``, the other traces of ``../shared/traces``
when that folder exists (said when it does not), and the synthetic layered DAG of
``bench_planners.py`` (``layered_N``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faasplan
from faasplan.data import trace_names, trace_path
from faasplan.experiments.planning import fit_history, make_evaluator, training_history
from faasplan.planners import Plan, run_planner
from faasplan.planners.heft import antichain_width
from faasplan.planners.saga import SagaBudgetExceeded, dag_width, saga_installed
from faasplan.simulator import GroundTruth, Platform
from faasplan.workflow import Workflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_planners import layered

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
P95_TOLERANCE = 0.02


def workloads(extra: Sequence[str]) -> dict[str, Path | int]:
    """Workload label -> trace path, or task count of a layered DAG."""
    out: dict[str, Path | int] = {n: trace_path(n) for n in trace_names()}
    if SHARED.is_dir():
        for p in sorted(SHARED.glob("*.json")):
            out.setdefault(p.stem, p)
    else:
        print(f"note: {SHARED} is missing; only the shipped traces are used", flush=True)
    for label in extra:
        out[label] = int(label.removeprefix("layered_"))
    return out


def load(source: Path | int) -> Workflow:
    if isinstance(source, int):
        return layered(source, seed=1)
    return faasplan.load_wfformat(source)


def one_plan(name: str, wf: Workflow, predictor: Any, platform: Platform, evaluate: Any,
             **options: Any) -> tuple[Plan | None, float, str]:
    """(plan or None, planning seconds, failure reason)."""
    started = time.perf_counter()
    try:
        plan = run_planner(name, wf, predictor, platform, sla="p95", seed=0, evaluate=evaluate,
                           **options)
    except SagaBudgetExceeded:
        return None, time.perf_counter() - started, "over budget"
    return plan, time.perf_counter() - started, ""


def row_for(label: str, wf: Workflow, widths: tuple[int, int], policy: str, plan: Plan | None,
            secs: float, why: str, ref: Plan | None) -> list[str]:
    """One table row; ``widths`` is (antichain width, most tasks at one depth)."""
    head = [label, str(len(wf)), str(widths[0]), str(widths[1]), policy]
    if plan is None:
        return [*head, why, "", "", "", "", "", f"{secs:.2f}"]
    p95 = plan.predicted_quantiles["p95"]
    cost = plan.predicted_cost_usd
    if ref is not None:
        ratio95 = f"{p95 / ref.predicted_quantiles['p95']:.3f}"
        ratioc = f"{cost / ref.predicted_cost_usd:.3f}"
    else:
        ratio95 = ratioc = ""
    workers = str(len(plan.workers))
    used = re.search(r"for (\d+) SAGA nodes in use", " ".join(plan.notes))
    if used:
        workers += f" ({used.group(1)} nodes)"
    return [*head, f"{p95 / 1000:.2f}", f"{cost * 1e3:.4f}",
            ratio95, ratioc, workers, sandboxes(plan), f"{secs:.2f}"]


def sandboxes(plan: Plan) -> str:
    """Sandboxes the predicted run started (its cold starts): workers that ran at once."""
    return str(int((plan.predicted.workers["startup_state"] == "cold").sum()))


def bench(label: str, source: Path | int, training_runs: int, saga_budget: float,
          notes: bool = False) -> tuple[list[list[str]], str]:
    wf = load(source)
    platform = Platform()
    truth = GroundTruth(wf, platform)
    predictor = fit_history(wf, training_history(wf, platform, truth, training_runs))
    width = antichain_width(wf)
    levels = dag_width(wf)
    plans: dict[str, tuple[Plan | None, float, str]] = {}
    for policy in ("finish", "cost"):
        evaluate = make_evaluator(wf, predictor, platform, "p95", 0)
        plans[policy] = one_plan("heft", wf, predictor, platform, evaluate, policy=policy)
    if saga_installed():
        evaluate = make_evaluator(wf, predictor, platform, "p95", 0)
        plans["saga:HEFT"] = one_plan("saga:HEFT", wf, predictor, platform, evaluate,
                                      time_budget_s=saga_budget)
    else:
        plans["saga:HEFT"] = (None, 0.0, "no saga extra")
    if notes:
        for policy in ("finish", "cost"):
            made = plans[policy][0]
            if made is not None:
                print(f"  {label} {policy}: {made.notes[-1]}", flush=True)
    ref = plans["saga:HEFT"][0] or plans["finish"][0]
    rows = [row_for(label, wf, (width, levels), name, *plans[name], ref) for name in plans]
    return rows, verdict(label, width, plans["cost"][0], plans["saga:HEFT"][0])


def verdict(label: str, width: int, cost: Plan | None, saga: Plan | None) -> str:
    if cost is None:
        return f"{label}: heft failed"
    workers = f"workers {len(cost.workers)} for width {width} " + (
        "(MET)" if len(cost.workers) <= width else "(missed)")
    if saga is None:
        return f"{label}: no saga:HEFT plan to compare; {workers}"
    r95 = cost.predicted_quantiles["p95"] / saga.predicted_quantiles["p95"]
    rc = cost.predicted_cost_usd / saga.predicted_cost_usd
    ok = rc <= 1.0 + 1e-9 and r95 <= 1.0 + P95_TOLERANCE
    return (f"{label}: p95 {r95:.3f}x, cost {rc:.3f}x of saga:HEFT "
            f"({'MET' if ok else 'missed'}); {workers}")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=None,
                        help="labels to run (default: every trace, then the layered DAGs)")
    parser.add_argument("--layered", nargs="*", default=["layered_5000"],
                        help="synthetic layered DAGs to add, as layered_N")
    parser.add_argument("--training-runs", type=int, default=6)
    parser.add_argument("--saga-budget", type=float, default=300.0,
                        help="seconds SAGA's HEFT may take per workload")
    parser.add_argument("--notes", action="store_true",
                        help="also print each heft plan's notes (bound, schedule kept)")
    args = parser.parse_args(argv)
    known = workloads(args.layered)
    labels = args.workloads or list(known)
    for label in labels:
        if label not in known and label.startswith("layered_"):
            known[label] = int(label.removeprefix("layered_"))
    header = ["workload", "tasks", "width", "levels", "planner", "p95 s", "cost mUSD", "p95 ratio",
              "cost ratio", "workers", "sandboxes", "plan s"]
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for label in labels:
        got, v = bench(label, known[label], args.training_runs, args.saga_budget, args.notes)
        rows += got
        verdicts.append(v)
        print(table(header, got).split("\n", 2)[2], flush=True)
    print()
    print("Ratios are against saga:HEFT (against the finish policy where SAGA gave no plan).")
    print(table(header, rows))
    print("\nTargets (policy cost: cost <= saga:HEFT at p95 +-2 %, workers <= width):")
    for v in verdicts:
        print(f"- {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
