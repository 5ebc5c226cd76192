"""Do predictions hold on real workflows? Repeats, scaling, promises and regret.

Reads real WfCommons runs from ``../shared/traces/families`` (repeated and scaled runs of
the same applications; not shipped with faasplan) and exits with code 2 when that folder is
missing. Nothing here is fitted or tuned on the instance it is evaluated on:

* **repeats** (BLAST small and medium, five runs each): leave one run out, fit on the other
  four, predict every task of the held-out run. Per-task MdAPE of the predicted median and
  coverage of the predicted p90, against the *floor* (each task's median over the other
  runs, the best a per-task point predictor can do) and the predecessor's predictor
  (:class:`faasplan.predictors.BaselinePredictor`).
* **scaling** (epigenomics, montage-2mass, seismology, cycles): fit on every smaller
  instance, predict the largest from its structure and workflow inputs alone. Per-task
  MdAPE, p90 coverage, critical-path p50 / recorded, and whether the recorded critical path
  (longest path of recorded runtimes) lies inside the predicted [p10, p90].
* **rolling** (model selection, the largest instances never read): on the smaller
  instances of each scaling family, predict instance ``i`` from instances ``0..i-1``.
* **promises** (the real single traces shipped in ``faasplan.data``): each planner's
  predicted p95 / ground-truth p95, with
``faasplan.experiments.compare`` (training history simulated
  from the trace, ground truth scored on fresh seeds).
* **regret** (largest instance of each scaling family): plan with ``--planner`` using the
  predictor learnt from the smaller instances, and with a predictor fitted on simulated runs
  of the instance's true profiles; ground-truth p95 of the first over the second.

Usage (from the project root)::

    python benchmarks/bench_predictions.py                 # everything
    python benchmarks/bench_predictions.py --only repeats,scaling
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import faasplan
from faasplan.experiments.planning import MonteCarloEvaluator, fit_history, training_history
from faasplan.experiments.predict import critical_path_draws, propagate_input_bytes
from faasplan.planners import run_planner
from faasplan.predictors import BaselinePredictor
from faasplan.simulator import GroundTruth, Platform, simulate_many

FAMILIES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "families"
SCALING = ("epigenomics-hep-100k", "montage-2mass", "seismology", "cycles-9p")
SECTIONS = ("repeats", "scaling", "rolling", "promises", "regret")


def mdape(pred: np.ndarray, actual: np.ndarray) -> float:
    """Median absolute percentage error over tasks with a positive actual value."""
    ok = actual > 0
    return float(np.median(np.abs(pred[ok] / actual[ok] - 1.0)) * 100.0)


def task_table(wf: faasplan.Workflow, predictor: object, memory: float,
               inputs: dict[str, float] | None = None) -> pd.DataFrame:
    inputs = inputs if inputs is not None else propagate_input_bytes(wf, predictor)
    rows = []
    for tid in wf.topological_order:
        fn = wf.node(tid).func.name
        dist = predictor.exec_distribution(fn, inputs[tid], memory,  # type: ignore[attr-defined]
                                           wf.structure_hash, tid)
        rows.append({"task": tid, "function": fn, "input_bytes": inputs[tid],
                     "p50": dist.quantile(0.5), "p90": dist.quantile(0.9),
                     "source": dist.source})
    return pd.DataFrame(rows).set_index("task")


def records_from_wfformat(paths: list[Path]) -> pd.DataFrame:
    from faasplan.predictors.wfrecords import records_from_wfformat as read

    return read(paths)


def recorded_runtimes(path: Path) -> pd.Series:
    frame = records_from_wfformat([path])
    return frame.set_index("task")["exec_ms"]


def recorded_critical_path(wf: faasplan.Workflow, runtimes: pd.Series) -> float:
    finish: dict[str, float] = {}
    for tid in wf.topological_order:
        ready = max((finish[u] for u in wf.upstream(tid)), default=0.0)
        finish[tid] = ready + float(runtimes[tid])
    return max(finish.values())


def repeats(platform: Platform) -> list[dict[str, object]]:
    out = []
    for size in ("small", "medium"):
        paths = sorted((FAMILIES / "blast").glob(f"blast-chameleon-{size}-*.json"))
        for held in paths:
            train = [p for p in paths if p != held]
            history = records_from_wfformat(train)
            wf = faasplan.load_wfformat(held)
            pred = fit_history(wf, history, platform)
            # Input sizes as the history knows them: each task's median over the other runs
            # (the same for every predictor compared).
            known = history.groupby("task")["input_bytes"].median().astype(float).to_dict()
            table = task_table(wf, pred, platform.reference_memory_mb, known)
            actual = recorded_runtimes(held).reindex(table.index).to_numpy()
            floor = history.groupby("task")["exec_ms"].median().reindex(table.index).to_numpy()
            base = BaselinePredictor.fit(history)
            base_pred = np.array([base.execution_ms(table.loc[t, "function"],
                                                    table.loc[t, "input_bytes"],
                                                    platform.reference_memory_mb)
                                  for t in table.index])
            ok = actual > 0
            out.append({"size": size, "held_out": held.stem, "tasks": len(table),
                        "mdape": mdape(table["p50"].to_numpy(), actual),
                        "floor_mdape": mdape(floor, actual),
                        "baseline_mdape": mdape(base_pred, actual),
                        "p90_coverage": float(np.mean(actual[ok] <= table["p90"].to_numpy()[ok])
                                              * 100.0)})
    return out


def _size_key(path: Path) -> int:
    return len(faasplan.load_wfformat(path))


def scaling(platform: Platform, seed: int) -> list[dict[str, object]]:
    out = []
    for family in SCALING:
        paths = sorted((FAMILIES / family).glob("*.json"), key=_size_key)
        target, train = paths[-1], paths[:-1]
        history = records_from_wfformat(train)
        wf = faasplan.load_wfformat(target)
        pred = fit_history(wf, history, platform)
        memory = platform.reference_memory_mb
        rng = np.random.default_rng(seed)
        draws, _ = critical_path_draws(wf, pred, memory, 1000, rng)
        table = task_table(wf, pred, memory)
        runtimes = recorded_runtimes(target)
        actual = runtimes.reindex(table.index).to_numpy()
        recorded = recorded_critical_path(wf, runtimes)
        p10, p50, p90 = (float(np.quantile(draws, q)) for q in (0.1, 0.5, 0.9))
        ok = actual > 0
        sources = table["source"].str.replace(r":.*", "", regex=True).value_counts()
        out.append({"family": family, "target": target.stem, "tasks": len(wf),
                    "train_runs": len(train),
                    "mdape": mdape(table["p50"].to_numpy(), actual),
                    "p90_coverage": float(np.mean(actual[ok] <= table["p90"].to_numpy()[ok])
                                          * 100.0),
                    "cp_recorded_s": recorded / 1000.0, "cp_p10_s": p10 / 1000.0,
                    "cp_p50_s": p50 / 1000.0, "cp_p90_s": p90 / 1000.0,
                    "cp_ratio": p50 / recorded, "inside": bool(p10 <= recorded <= p90),
                    "sources": ", ".join(f"{k} {v}" for k, v in sources.items())})
    return out


def rolling(platform: Platform, seed: int) -> list[dict[str, object]]:
    """The model-selection set: on the training instances of each scaling family only
    (the largest never read), predict instance ``i`` from instances ``0..i-1``, i >= 3."""
    out = []
    for family in SCALING:
        paths = sorted((FAMILIES / family).glob("*.json"), key=_size_key)[:-1]
        for i in range(3, len(paths)):
            target, train = paths[i], paths[:i]
            wf = faasplan.load_wfformat(target)
            pred = fit_history(wf, records_from_wfformat(train), platform)
            draws, _ = critical_path_draws(wf, pred, platform.reference_memory_mb, 1000,
                                           np.random.default_rng(seed))
            recorded = recorded_critical_path(wf, recorded_runtimes(target))
            p10, p50, p90 = (float(np.quantile(draws, q)) for q in (0.1, 0.5, 0.9))
            out.append({"family": family, "target": target.stem, "tasks": len(wf),
                        "train_runs": len(train), "cp_recorded_s": recorded / 1000.0,
                        "cp_p10_s": p10 / 1000.0, "cp_p50_s": p50 / 1000.0,
                        "cp_p90_s": p90 / 1000.0, "cp_ratio": p50 / recorded,
                        "inside": bool(p10 <= recorded <= p90)})
    return out


def promises(seed: int, replicates: int, traces: list[str]) -> list[dict[str, object]]:
    from faasplan.experiments.compare import compare, prepare
    from faasplan.scenarios import load_target

    out = []
    for name in traces:
        loaded = load_target(str(faasplan.data.trace_path(name)))
        setup = prepare(loaded, replicates=replicates, seed=seed)
        result = compare(setup)
        for row in result.to_records():
            out.append({"trace": name, "planner": row["planner"],
                        "ratio": row["predicted_makespan_ms"] / row["makespan_p95_ms"],
                        "p95_s": row["makespan_p95_ms"] / 1000.0, "cost_usd": row["cost_usd"],
                        "planning_s": row["planning_ms"] / 1000.0})
    return out


def regret(platform: Platform, planner: str, seed: int, replicates: int
           ) -> list[dict[str, object]]:
    out = []
    for family in SCALING:
        paths = sorted((FAMILIES / family).glob("*.json"), key=_size_key)
        target, train = paths[-1], paths[:-1]
        wf = faasplan.load_wfformat(target)
        truth = GroundTruth(wf, platform, noise=0.1)
        learnt = fit_history(wf, records_from_wfformat(train), platform)
        oracle = fit_history(wf, training_history(wf, platform, truth, 6, seed=seed), platform)
        p95 = {}
        for label, pred in (("learnt", learnt), ("true", oracle)):
            ev = MonteCarloEvaluator(wf, pred, platform, "p95", seed)
            plan = run_planner(planner, wf, pred, platform, sla="p95", seed=seed, evaluate=ev,
                               history=True)
            runs = simulate_many(wf, plan, platform, seed=seed + 1000, replicates=replicates,
                                 behaviour=truth)
            p95[label] = float(np.percentile([t.makespan_ms for t in runs], 95))
        out.append({"family": family, "target": target.stem, "planner": planner,
                    "p95_learnt_s": p95["learnt"] / 1000.0, "p95_true_s": p95["true"] / 1000.0,
                    "regret": p95["learnt"] / p95["true"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections among {', '.join(SECTIONS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=20,
                        help="ground-truth replicates (promises, regret)")
    parser.add_argument("--planner", default="heft", help="planner of the regret section")
    parser.add_argument("--traces", default=",".join(faasplan.data.trace_names()),
                        help="shipped traces of the promises section")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"error: unknown sections {unknown}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    needs_families = bool(set(only) & {"repeats", "scaling", "rolling", "regret"})
    if needs_families and not FAMILIES.is_dir():
        print(f"error: {FAMILIES} is missing: the repeats, scaling, rolling and regret "
              "sections read the real trace families there (not shipped with faasplan); run with "
              "--only promises, or put the families beside the project", file=sys.stderr)
        return 2
    platform = Platform()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    summary: list[str] = []
    for section in only:
        started = time.perf_counter()
        print(f"== {section}", flush=True)
        if section == "repeats":
            frame = pd.DataFrame(repeats(platform))
            print(frame.round(2).to_string(index=False))
            for size, grp in frame.groupby("size"):
                summary.append(f"repeats {size} (mean over held-out runs): MdAPE "
                               f"{grp['mdape'].mean():.1f} % (floor "
                               f"{grp['floor_mdape'].mean():.1f} %, baseline "
                               f"{grp['baseline_mdape'].mean():.1f} %), p90 coverage "
                               f"{grp['p90_coverage'].mean():.1f} %")
        elif section == "scaling":
            frame = pd.DataFrame(scaling(platform, args.seed))
            print(frame.round(3).to_string(index=False))
            err = (frame["cp_ratio"] - 1.0).abs().median() * 100.0
            summary.append(f"scaling: recorded critical path inside [p10, p90] on "
                           f"{int(frame['inside'].sum())}/{len(frame)} families; median "
                           f"|cp p50 / recorded - 1| {err:.1f} %; cp ratios "
                           f"{', '.join(f'{r:.2f}' for r in frame['cp_ratio'])}")
        elif section == "rolling":
            frame = pd.DataFrame(rolling(platform, args.seed))
            print(frame.round(3).to_string(index=False))
            err = (frame["cp_ratio"] - 1.0).abs().median() * 100.0
            summary.append(f"rolling (training instances only): recorded critical path "
                           f"inside [p10, p90] in {frame['inside'].mean() * 100:.0f} % of "
                           f"{len(frame)}; median |cp p50 / recorded - 1| {err:.1f} %")
        elif section == "promises":
            frame = pd.DataFrame(promises(args.seed, args.replicates,
                                          [t for t in args.traces.split(",") if t]))
            print(frame.round(3).to_string(index=False))
            err = (frame["ratio"] - 1.0).abs()
            summary.append(f"promises: predicted/true p95 {frame['ratio'].min():.3f}-"
                           f"{frame['ratio'].max():.3f}, median |error| "
                           f"{err.median() * 100:.1f} %, within 10 %: "
                           f"{int((err <= 0.10).sum())}/{len(frame)}")
        elif section == "regret":
            frame = pd.DataFrame(regret(platform, args.planner, args.seed, args.replicates))
            print(frame.round(3).to_string(index=False))
            summary.append(f"regret ({args.planner}): learnt/true-profile p95 "
                           f"{', '.join(f'{r:.3f}' for r in frame['regret'])}")
        print(f"({time.perf_counter() - started:.1f} s)\n", flush=True)
    print("summary:")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
