"""Planners: planning time at scale, and plan quality under the simulated ground truth.

Run from the project root::

    python benchmarks/bench_planners.py                 # both parts
    python benchmarks/bench_planners.py --part time     # (a) only
    python benchmarks/bench_planners.py --part quality --replicates 50

(a) **Planning time** of every registered planner on synthetic layered DAGs of 100, 1,000
and 10,000 tasks (``--sizes``), with a predictor without history (io hints and defaults).

(b) **Plan quality**: for each workload, predictors are fitted on the metrics of
``--training-runs`` simulated past runs
(:func:`faasplan.experiments.planning.training_history`); each
planner plans at the p95 SLA; the plan is then simulated under the ground truth
(:class:`~faasplan.simulator.GroundTruth`: profiles, 10 % execution noise, random cold
starts) ``--replicates`` times. Reported: p50/p95 makespan and mean cost. ``sim-guided$``
is sim-guided with a cost budget equal to the predicted cost of the baseline (wukong,
uniform or heft) with the best predicted makespan. Built-in workloads are profiled in this
process (:func:`faasplan.profile`); the WfCommons traces carry their recorded profiles.

The target checked at the end: sim-guided p95 <= 0.8 x the best p95 of wukong, uniform
and heft, at equal or lower mean cost, on at least 3 workloads. Next to it, a lower bound
no plan can beat (:func:`lower_bound_ms`) relative to that best p95 says how much room
there was at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import faasplan
from faasplan.data import trace_path  # the real traces shipped with faasplan
from faasplan.experiments.planning import fit_history, io_hints, plan, training_history
from faasplan.planners import planner_names
from faasplan.predictors import Predictor
from faasplan.simulator import GroundTruth, Platform, simulate_many
from faasplan.workflow import TaskProfile, Workflow, io, task
from faasplan.workloads import REGISTRY

BASELINES = ("wukong", "uniform", "heft")
TARGET_RATIO = 0.8


@task(io=io.linear(0.5))
def layer_step(*inputs: Any) -> Any:
    """A synthetic task (never run here: the benchmark only plans and simulates)."""
    return inputs


def layered(n: int, seed: int = 0) -> Workflow:
    """``n`` tasks in layers of ~1.5 sqrt(n); each reads 1-3 tasks of the layer above.

    Profiles: execution 50-2000 ms, output 1 kB-10 MB, drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    width = max(1, round(1.5 * n ** 0.5))
    nodes: list[Any] = []
    above: list[Any] = []
    read: set[int] = set()
    while len(nodes) < n:
        layer = []
        for _ in range(min(width, n - len(nodes))):
            k = min(int(rng.integers(1, 4)), len(above))
            picks = sorted(rng.choice(len(above), size=k, replace=False).tolist()) if k else []
            read.update(id(above[j]) for j in picks)
            profile = TaskProfile(float(rng.uniform(50, 2000)), int(rng.uniform(1e3, 1e7)))
            node = layer_step(*(above[j] for j in picks), task_id=f"L{len(nodes)}",
                              profile=profile)
            nodes.append(node)
            layer.append(node)
        above = layer
    return Workflow([x for x in nodes if id(x) not in read], name=f"layered-{n}", detect=False)


def planning_times(sizes: Sequence[int], planners: Sequence[str]) -> list[list[str]]:
    """Table rows: one per size, seconds per planner."""
    platform = Platform()
    rows = []
    for n in sizes:
        wf = layered(n)
        predictor = Predictor.empty(io_hints(wf))
        row = [f"layered {n:,}", f"{wf.graph.number_of_edges():,}"]
        for name in planners:
            started = time.perf_counter()
            plan(wf, name, predictor, platform, sla="p95", seed=0)
            row.append(f"{time.perf_counter() - started:.2f}")
            print(f"  {n} tasks, {name}: {row[-1]} s", flush=True)
        rows.append(row)
    return rows


# -- quality --------------------------------------------------------------------------------
def builtin(name: str, **kwargs: Any) -> Callable[[], tuple[Workflow, dict[str, TaskProfile]]]:
    def make() -> tuple[Workflow, dict[str, TaskProfile]]:
        wf = REGISTRY[name](**kwargs)
        return wf, faasplan.profile(wf, repeat=3)
    return make


def wfcommons(name: str) -> Callable[[], tuple[Workflow, dict[str, TaskProfile]]]:
    def make() -> tuple[Workflow, dict[str, TaskProfile]]:
        return faasplan.load_wfformat(trace_path(name)), {}
    return make


def synthetic(n: int) -> Callable[[], tuple[Workflow, dict[str, TaskProfile]]]:
    def make() -> tuple[Workflow, dict[str, TaskProfile]]:
        return layered(n, seed=1), {}
    return make


WORKLOADS: dict[str, Callable[[], tuple[Workflow, dict[str, TaskProfile]]]] = {
    "tree_reduction": builtin("tree_reduction"),
    "gemm(n=512)": builtin("gemm", n=512, block=128),
    "image_pipeline(8x256)": builtin("image_pipeline", images=8, size=256),
    "montage_like": builtin("montage_like"),
    "wordcount": builtin("wordcount"),
    "epigenomics_41t": wfcommons("epigenomics_41t"),
    "cycles_67t": wfcommons("cycles_67t"),
    "blast_43t": wfcommons("blast_43t"),
    "montage_58t": wfcommons("montage_58t"),
    "layered_200": synthetic(200),
}


def ground_truth(wf: Workflow, placements: Any, platform: Platform, truth: GroundTruth,
                 replicates: int) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, mean cost USD) of ``replicates`` ground-truth runs."""
    traces = simulate_many(wf, placements, platform, seed=12345, replicates=replicates,
                           behaviour=truth)
    spans = np.array([t.makespan_ms for t in traces])
    cost = float(np.mean([t.cost_usd for t in traces]))
    return float(np.percentile(spans, 50)), float(np.percentile(spans, 95)), cost


def lower_bound_ms(wf: Workflow, platform: Platform, profiles: dict[str, TaskProfile]) -> float:
    """A makespan no plan can beat: one invocation and cold start, then the critical path.

    Execution times are the noise-free ground truth at the largest memory (the fastest);
    transfers, further start-ups and queueing are left out, and the cold start is the
    median, so the bound is below what any plan's p50 (let alone p95) can reach.
    """
    exact = GroundTruth(wf, platform, profiles=profiles or None, noise=0.0)
    rng = np.random.default_rng(0)
    top = max(platform.memory_sizes_mb)
    length, _ = wf.critical_path(lambda t: exact.exec_ms(t, top, 0, rng))
    start = platform.invocation_ms(0) + min(platform.cold_start_median_ms(m)
                                            for m in platform.memory_sizes_mb)
    return start + length


def quality(workloads: Sequence[str], planners: Sequence[str], replicates: int,
            training_runs: int, budget_s: float) -> tuple[list[list[str]], list[str]]:
    """Table rows (one per workload and planner) and the target verdict per workload."""
    platform = Platform()
    rows: list[list[str]] = []
    verdicts: list[str] = []
    for label in workloads:
        wf, profiles = WORKLOADS[label]()
        truth = GroundTruth(wf, platform, profiles=profiles or None)
        predictor = fit_history(wf, training_history(wf, platform, truth, training_runs))
        results: dict[str, tuple[float, float, float, float, float]] = {}
        plans = {}
        for name in planners:
            options = {"time_budget_s": budget_s} if name == "sim-guided" else {}
            try:
                p = plan(wf, name, predictor, platform, sla="p95", seed=0, **options)
            except RuntimeError as exc:
                print(f"  {label}: {name} failed: {type(exc).__name__}", flush=True)
                rows.append([label, str(len(wf)), name, "failed", "", "", "", ""])
                continue
            plans[name] = p
            p50, p95, cost = ground_truth(wf, p, platform, truth, replicates)
            results[name] = (p.planning_ms / 1000, p.predicted_makespan_ms, p50, p95, cost)
        base = [b for b in BASELINES if b in plans]
        if "sim-guided" in planners and base:
            ref = min(base, key=lambda b: plans[b].predicted_makespan_ms)
            p = plan(wf, "sim-guided", predictor, platform, sla="p95", seed=0,
                     time_budget_s=budget_s, cost_budget_usd=plans[ref].predicted_cost_usd)
            p50, p95, cost = ground_truth(wf, p, platform, truth, replicates)
            results["sim-guided$"] = (p.planning_ms / 1000, p.predicted_makespan_ms, p50, p95,
                                      cost)
        for name, (secs, pred, p50, p95, cost) in results.items():
            rows.append([label, str(len(wf)), name, f"{secs:.2f}", f"{pred / 1000:.2f}",
                         f"{p50 / 1000:.2f}", f"{p95 / 1000:.2f}", f"{cost * 1e3:.4f}"])
        if base and ("sim-guided" in results or "sim-guided$" in results):
            best = min(base, key=lambda b: results[b][3])
            b95, bcost = results[best][3], results[best][4]
            bound = lower_bound_ms(wf, platform, profiles)
            hits = [f"lower bound of any plan {bound / b95:.2f}x"]
            for sg in ("sim-guided", "sim-guided$"):
                if sg in results:
                    ratio = results[sg][3] / b95
                    cheaper = results[sg][4] <= bcost * (1 + 1e-9)
                    hits.append(f"{sg}: {ratio:.2f}x p95 of {best}, cost "
                                f"{results[sg][4] / bcost:.2f}x "
                                f"({'MET' if ratio <= TARGET_RATIO and cheaper else 'missed'})")
            verdicts.append(f"{label}: " + "; ".join(hits))
        print(f"  {label} done", flush=True)
    return rows, verdicts


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("time", "quality", "all"), default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--planners", nargs="+", default=list(planner_names()))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS))
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--training-runs", type=int, default=10)
    parser.add_argument("--budget", type=float, default=2.0,
                        help="sim-guided time budget in seconds (quality part)")
    args = parser.parse_args(argv)
    if args.part in ("time", "all"):
        print("## (a) planning time, seconds (wall clock, including the plan's validation)")
        rows = planning_times(args.sizes, args.planners)
        print(table(["workflow", "edges", *args.planners], rows))
    if args.part in ("quality", "all"):
        print(f"## (b) ground truth over {args.replicates} replicates (times in s, cost in "
              "milli-USD)")
        rows, verdicts = quality(args.workloads, args.planners, args.replicates,
                                 args.training_runs, args.budget)
        print(table(["workload", "tasks", "planner", "plan s", "predicted", "p50", "p95",
                     "cost mUSD"], rows))
        print("\nTarget (sim-guided p95 <= 0.8x best of wukong/uniform/heft at <= cost):")
        for v in verdicts:
            print(f"- {v}")
        met = sum("MET" in v for v in verdicts)
        print(f"\nworkloads meeting the target: {met} of {len(verdicts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
