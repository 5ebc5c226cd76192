"""The ``faasplan`` command: ``main(argv) -> int``.

Each subcommand is a plain function over parsed arguments; one error boundary maps bad input
to exit code 2 and run failures to exit code 1, with a message that says how to fix it.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(ValueError):
    """An error in what the user gave (file, flag, key); exit code 2."""


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faasplan",
        description="Simulate, plan and run serverless DAG workflows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("faasplan compare scenarios/quickstart.toml --out out/quickstart",
                         "faasplan simulate ../shared/traces/montage_58t.json --planner wukong",
                         "faasplan run faasplan.workloads:tree_reduction --planner wukong"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    target_help = ("a scenario .toml, a WfFormat .json trace, or module:function returning a "
                   "faasplan.Workflow")

    def add(name: str, help_: str, examples: Sequence[str]) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=_examples(*examples),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    s = add("simulate", "simulate a workflow under one planner's plan",
            ["faasplan simulate scenarios/quickstart.toml --planner uniform-opt --replicates 10",
             "faasplan simulate trace.json --metrics-out runs.parquet --json"])
    s.add_argument("target", help=target_help)
    s.add_argument("--planner", default="wukong", help="planner name (default: wukong)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: scenario's)")
    s.add_argument("--replicates", type=int, default=1, help="Monte-Carlo replicates")
    s.add_argument("--sla", default=None, help="SLA of the predictions: average or pNN")
    s.add_argument("--metrics-out", default=None, help="write the runs' metrics (Parquet)")
    s.add_argument("--gantt", default=None, help="write a Gantt chart PNG of replicate 0")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_simulate)

    s = add("plan", "plan a workflow and print or save the plan",
            ["faasplan plan scenarios/quickstart.toml --planner heft --out plan.json"])
    s.add_argument("target", help=target_help)
    s.add_argument("--planner", required=True, help="planner name")
    s.add_argument("--sla", default=None, help="average or pNN (default: scenario's)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--out", default=None, help="write the plan as JSON")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plan)

    s = add("compare", "compare planners by Monte-Carlo simulation and write a report",
            ["faasplan compare scenarios/quickstart.toml --out out/q",
             "faasplan compare ../shared/traces/montage_58t.json --json",
             "faasplan compare --history runs.parquet --planners wukong,heft"])
    s.add_argument("target", nargs="?", help=target_help + " (optional with --history)")
    s.add_argument("--planners", default=None, help="comma-separated names (default: all)")
    s.add_argument("--replicates", type=int, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--sla", default=None)
    s.add_argument("--history", default=None,
                   help="metrics file: fit predictors on it (and, without TARGET, compare for "
                        "every workflow type found in it)")
    s.add_argument("--out", default=None, help="directory for runs, plots and report.html")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_compare)

    s = add("fit", "fit predictors on metrics and report their accuracy",
            ["faasplan fit runs.parquet", "faasplan fit runs.parquet --json"])
    s.add_argument("metrics", help="metrics file (Parquet) written by simulate/run")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_fit)

    s = add("run", "execute a plan for real on Redis with FaaS-style workers",
            ["faasplan run faasplan.workloads:tree_reduction --planner wukong --json",
             "faasplan run scenarios/gemm.toml --planner non-uniform-opt --redis redis://:pw@host:6379"])
    s.add_argument("target", help=target_help)
    s.add_argument("--planner", default="wukong")
    s.add_argument("--plan", default=None, help="a plan JSON written by 'faasplan plan --out'")
    s.add_argument("--redis", default=None,
                   help="Redis URL (default: a private redis-server started for this run)")
    s.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    s.add_argument("--out", default="faasplan-runs",
                   help="folder for the run's Gantt chart (<out>/<run id>/gantt.png) and the "
                        "metrics store <out>/metrics.parquet, appended to by every run "
                        "(default: faasplan-runs)")
    s.add_argument("--no-files", action="store_true", help="write no Gantt chart or metrics")
    s.add_argument("--metrics-out", default=None, help="metrics file (overrides --out)")
    s.add_argument("--gantt", default=None, help="Gantt chart PNG path (overrides --out)")
    s.add_argument("--keep-data", action="store_true", help="keep intermediate data in Redis")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_run)

    s = add("worker", "serve invocations from a Redis queue (joins a runtime's pool)",
            ["FAASPLAN_HMAC_KEY=... faasplan worker --redis redis://:pw@host:6379"])
    s.add_argument("rest", nargs=argparse.REMAINDER, help="options of the worker")
    s.set_defaults(func=cmd_worker)

    s = add("sweep", "run scenario variants over a parameter grid, locally or on Dask",
            ["faasplan sweep scenarios/quickstart.toml --grid workflow.params.leaves=16,64",
             "faasplan sweep s.toml --grid platform.cold_start_ms=100,500 --dask tcp://h:8786"])
    s.add_argument("scenario", help="scenario .toml")
    s.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=V1,V2",
                   help="a key path and its values; repeat for a cartesian product")
    s.add_argument("--dask", default=None, help="Dask scheduler address (default: local)")
    s.add_argument("--workers", type=int, default=None, help="local processes (default: CPUs)")
    s.add_argument("--replicates", type=int, default=None)
    s.add_argument("--out", default=None, help="write sweep.csv/parquet here")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sweep)

    s = add("calibrate", "fit the platform model from runtime metrics",
            ["faasplan calibrate runs.parquet --out platform.toml"])
    s.add_argument("metrics", help="metrics file (Parquet) from real runs")
    s.add_argument("--out", default=None, help="write the platform TOML here")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_calibrate)

    s = add("planners", "list the registered planners", ["faasplan planners"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_planners)
    return p


# -- helpers -----------------------------------------------------------------------------------
def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _progress(enabled: bool) -> tuple[Any, Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr (or nothing when output is JSON / not a terminal)."""
    if not enabled:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=_console(), transient=True)
    ids: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in ids:
            ids[stage] = bar.add_task(stage, total=total)
        bar.update(ids[stage], completed=done, total=total)

    return bar, update


def _table(rows: list[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c == "planner" else "right")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: do not squeeze columns
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.6f}" if abs(v) < 0.01 and v else f"{v:,.1f}"
    return str(v)


def _setup(args: argparse.Namespace, **overrides: Any) -> Any:
    from faasplan.compare import prepare
    from faasplan.scenarios import load_target

    return prepare(load_target(args.target), seed=getattr(args, "seed", None),
                   sla=getattr(args, "sla", None), **overrides)


# -- commands ----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate the target under one planner's plan on the ground truth."""
    from faasplan.compare import plan_with
    from faasplan.history import remember_workflow
    from faasplan.predictors import save_metrics
    from faasplan.simulator import simulate_many

    if args.replicates < 1:
        raise BadInput(f"--replicates must be >= 1, got {args.replicates}")
    setup = _setup(args, planners=[args.planner])
    plan = plan_with(setup, args.planner)
    runs = simulate_many(setup.workflow, plan, setup.platform, seed=setup.seed,
                         replicates=args.replicates, behaviour=setup.truth)
    if args.metrics_out:
        records = [r for i, t in enumerate(runs)
                   for r in t.metrics(run_id=f"{setup.name}-{args.planner}-{i}",
                                      planner=args.planner)]
        save_metrics(records, args.metrics_out)
        remember_workflow(args.metrics_out, setup.workflow)
    if args.gantt:
        runs[0].gantt().savefig(args.gantt, dpi=110)
    makespans = [t.makespan_ms for t in runs]
    result = {
        "planner": args.planner,
        "workflow": setup.workflow.name,
        "tasks": len(setup.workflow),
        "makespan_ms": makespans[0] if len(runs) == 1 else makespans,
        "predicted_makespan_ms": plan.predicted_makespan_ms,
        "cost_usd": runs[0].cost_usd if len(runs) == 1 else [t.cost_usd for t in runs],
        "cold_starts": runs[0].cold_starts if len(runs) == 1 else [t.cold_starts for t in runs],
        "storage_bytes": runs[0].storage_bytes if len(runs) == 1 else
        [t.storage_bytes for t in runs],
        "workers": len(runs[0].workers),
        "notes": list(plan.notes),
    }
    if args.json:
        _print_json(result)
    else:
        _table([{**result, "makespan_ms": float(sum(makespans) / len(makespans)),
                 "cost_usd": float(sum(t.cost_usd for t in runs) / len(runs))}],
               ["planner", "tasks", "makespan_ms", "predicted_makespan_ms", "cost_usd",
                "workers"], f"{setup.workflow.name}: {len(runs)} simulated run(s)")
        for note in plan.notes:
            _console().print(f"note: {note}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """Plan the target and print a summary or save the plan."""
    from faasplan.compare import plan_with

    setup = _setup(args, planners=[args.planner])
    plan = plan_with(setup, args.planner)
    if args.out:
        plan.save(args.out)
    data = plan.to_dict()
    data["workers"] = len(plan.workers)
    if args.json:
        _print_json(data)
    else:
        memories = sorted({p.memory_mb for p in plan.placements.values()})
        _console().print(
            f"{args.planner}: {len(plan.placements)} tasks, {len(plan.workers)} planned workers, "
            f"memory {memories} MB, predicted makespan {plan.predicted_makespan_ms:,.1f} ms"
            + (f", written to {args.out}" if args.out else ""))
        for note in plan.notes:
            _console().print(f"note: {note}")
    return EXIT_OK


SUMMARY_COLUMNS = ["planner", "makespan_p50_ms", "makespan_p95_ms", "makespan_p99_ms",
                   "cost_usd", "cold_starts", "storage_bytes", "planning_ms"]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare planners on a target (or on every workflow type of a metrics history)."""
    from faasplan.compare import compare, prepare
    from faasplan.scenarios import load_target

    planners = [p.strip() for p in args.planners.split(",")] if args.planners else None
    if args.replicates is not None and args.replicates < 1:
        raise BadInput(f"--replicates must be >= 1, got {args.replicates}")
    if args.target is None:
        if not args.history:
            raise BadInput("compare needs a TARGET, or --history METRICS to compare planners "
                           "for every workflow type found in a metrics store")
        return _compare_history(args, planners)
    setup = prepare(load_target(args.target), planners=planners, replicates=args.replicates,
                    seed=args.seed, sla=args.sla, history=args.history)
    bar, update = _progress(not args.json and sys.stderr.isatty())
    if bar is not None:
        with bar:
            result = compare(setup, update)
    else:
        result = compare(setup)
    report = None
    if args.out:
        from faasplan.report import write_report

        report = write_report(result, args.out)
    records = result.to_records()
    if args.json:
        _print_json(records)
    else:
        _table(records, SUMMARY_COLUMNS,
               f"{setup.name}: {len(setup.workflow)} tasks, SLA {setup.sla}, "
               f"{setup.replicates} replicates, {setup.history_records} history records")
        if report is not None:
            _console().print(f"report: {report}")
    return EXIT_OK


def _compare_history(args: argparse.Namespace, planners: list[str] | None) -> int:
    """Compare planners for every workflow type of a metrics store."""
    from faasplan.api import fit_history
    from faasplan.compare import Setup, compare
    from faasplan.history import HistoryBehaviour, recall_workflows
    from faasplan.planners import planner_names
    from faasplan.predictors import load_metrics
    from faasplan.simulator import Platform

    df = load_metrics(args.history)
    known = recall_workflows(args.history)
    hashes = list(dict.fromkeys(df["workflow_hash"]))
    unknown = [h for h in hashes if h not in known]
    if not known:
        raise BadInput(f"{args.history}: no workflow catalog beside it ({args.history}.workflows/"
                       "); metrics written by 'faasplan simulate/run --metrics-out' have one. "
                       f"Otherwise give the TARGET: faasplan compare TARGET --history "
                       f"{args.history}")
    rows: list[dict[str, Any]] = []
    for h in hashes:
        if h not in known:
            continue
        wf = known[h]
        sub = df[df["workflow_hash"] == h]
        predictor = fit_history(wf, list(_records(sub)))
        setup = Setup(f"{wf.name} ({h})", wf, Platform(), HistoryBehaviour(wf, predictor),
                      predictor, tuple(planners or planner_names()), args.sla or "p95",
                      args.replicates or 20, args.seed or 0, {}, len(sub))
        for row in compare(setup).to_records():
            rows.append({"workflow": wf.name, "workflow_hash": h, "records": len(sub), **row})
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["workflow", "records", *SUMMARY_COLUMNS],
               f"{args.history}: {len(known)} workflow type(s)")
        if unknown:
            _console().print(f"skipped {len(unknown)} workflow type(s) with no stored "
                             f"definition: {', '.join(unknown[:5])}")
    return EXIT_OK


def _records(df: Any) -> Any:
    from faasplan.predictors import frame_to_records

    return frame_to_records(df)


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit predictors on a metrics file and report accuracy against the baseline."""
    from faasplan.predictors import accuracy_report, fit, load_metrics

    df = load_metrics(args.metrics)
    predictor = fit(df)
    report = accuracy_report(df)
    rows = [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in report.to_dict(orient="records")]
    if args.json:
        _print_json({"records": len(df), "models": rows})
    else:
        _console().print(repr(predictor))
        _table(rows, ["function", "model", "samples", "mdape_ours", "mdape_baseline",
                      "p90_coverage"], f"{args.metrics}: {len(df)} records")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Execute the planned workflow on Redis."""
    from faasplan.compare import plan_with
    from faasplan.planners import Plan
    from faasplan.runtime import run

    setup = _setup(args, planners=[args.planner], replicates=1)
    plan = Plan.load(args.plan) if args.plan else plan_with(setup, args.planner)
    plan.validate(setup.workflow)
    bar, update = _progress(not args.json and sys.stderr.isatty())
    kwargs: dict[str, Any] = {"timeout_s": args.timeout, "keep_data": args.keep_data}
    if bar is not None and update is not None:
        stage = update
        kwargs["progress"] = lambda p: stage("tasks", p.done, p.total)
        with bar:
            result = run(setup.workflow, plan, redis=args.redis, **kwargs)
    else:
        result = run(setup.workflow, plan, redis=args.redis, **kwargs)
    metrics_path, gantt_path = _run_files(args, result.run_id)
    if metrics_path is not None:
        from faasplan.history import remember_workflow
        from faasplan.predictors import save_metrics

        save_metrics(result.metrics(), metrics_path)
        remember_workflow(metrics_path, setup.workflow)
    if gantt_path is not None:
        from faasplan.report import plot_gantt

        gantt_path.parent.mkdir(parents=True, exist_ok=True)
        plot_gantt(result.trace, title=f"{setup.workflow.name} under {plan.planner}"
                   ).savefig(gantt_path, dpi=110)
    out = {"planner": plan.planner, "workflow": setup.workflow.name, "run_id": result.run_id,
           "tasks": len(setup.workflow), "makespan_ms": result.makespan_ms,
           "predicted_makespan_ms": plan.predicted_makespan_ms,
           "metrics": str(metrics_path) if metrics_path else None,
           "gantt": str(gantt_path) if gantt_path else None,
           "result": _jsonable(result.result)}
    if args.json:
        _print_json(out)
    else:
        _console().print(f"{setup.workflow.name} under {plan.planner}: "
                         f"{out['makespan_ms']:,.1f} ms (predicted "
                         f"{plan.predicted_makespan_ms:,.1f} ms)")
        for key in ("metrics", "gantt"):
            if out[key]:
                _console().print(f"{key}: {out[key]}")
        print(textwrap.shorten(repr(result.result), 400))
    return EXIT_OK


def _run_files(args: argparse.Namespace, run_id: str) -> tuple[Path | None, Path | None]:
    """Where ``faasplan run`` writes its metrics and Gantt chart (None: not written)."""
    base = None if args.no_files else Path(args.out)
    metrics = Path(args.metrics_out) if args.metrics_out else (
        base / "metrics.parquet" if base is not None else None)
    gantt = Path(args.gantt) if args.gantt else (
        base / run_id / "gantt.png" if base is not None else None)
    return metrics, gantt


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return repr(value)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker process that serves invocations from Redis."""
    from faasplan.runtime.worker import worker_main

    return int(worker_main(list(args.rest)))


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run every variant of a scenario grid and tabulate the comparisons."""
    from faasplan.sweep import parse_grid, run_sweep

    grid = parse_grid(args.grid)
    bar, update = _progress(not args.json and sys.stderr.isatty())
    kwargs: dict[str, Any] = {"dask_address": args.dask, "workers": args.workers,
                              "replicates": args.replicates}
    if bar is not None:
        with bar:
            df = run_sweep(args.scenario, grid, progress=update, **kwargs)
    else:
        df = run_sweep(args.scenario, grid, **kwargs)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "sweep.csv", index=False)
        df.to_parquet(out / "sweep.parquet", index=False)
    records = [{str(k): v for k, v in r.items()} for r in df.to_dict(orient="records")]
    if args.json:
        _print_json(records)
    else:
        cols = [c for c in df.columns if c not in ("notes",)]
        _table(records, cols[:12], f"sweep of {args.scenario}: {len(df)} rows")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit platform parameters from runtime metrics."""
    from faasplan.calibrate import calibrate
    from faasplan.predictors import load_metrics

    platform, report = calibrate(load_metrics(args.metrics))
    if args.out:
        platform.to_toml(args.out)
    if args.json:
        _print_json({"platform": platform.to_dict(), "fit": report})
    else:
        for key, value in report.items():
            _console().print(f"{key}: {value}")
        if args.out:
            _console().print(f"platform written to {args.out}")
    return EXIT_OK


def cmd_planners(args: argparse.Namespace) -> int:
    """List registered planners."""
    from faasplan.planners import PLANNERS

    rows = [{"planner": e.name, "description": e.description} for e in PLANNERS.values()]
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["planner", "description"], "planners")
    return EXIT_OK


# -- error boundary ----------------------------------------------------------------------------
def _bad_input_types() -> tuple[type[BaseException], ...]:
    from faasplan.planners import PlanError
    from faasplan.predictors import MetricsError
    from faasplan.scenarios import ScenarioError
    from faasplan.workflow import WorkflowError

    return (BadInput, ScenarioError, WorkflowError, PlanError, MetricsError, FileNotFoundError,
            KeyError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``faasplan`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("faasplan: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # the one error boundary of the command
        bad = isinstance(exc, _bad_input_types())
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"faasplan {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
