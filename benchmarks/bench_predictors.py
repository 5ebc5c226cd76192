"""Predictor accuracy (ours vs the predecessor's baseline) and query speed.

The metrics come from one function, :func:`metrics_source`; today it draws synthetic runs
from known models, later it can read simulator or runtime output instead.

    python benchmarks/bench_predictors.py                 # 4 memory sizes, 30 runs
    python benchmarks/bench_predictors.py --memories spread --runs 30 --seed 1

Prints the leave-one-run-out accuracy report (MdAPE in %, p90 coverage in %), the fitted
exponents next to the true ones, and timings.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from faasplan.predictors import (
    MetricsRecord,
    Transfer,
    accuracy_report,
    fit,
    records_to_frame,
)
from faasplan.workflow import IOHint, TaskProfile, Workflow, io

FOUR_MEMORIES = (512, 1024, 2048, 3008)
SPREAD_MEMORIES = tuple(range(128, 3009, 64))


@dataclass(frozen=True)
class TrueFunction:
    """Ground truth of one synthetic function."""

    name: str
    min_bytes: float
    max_bytes: float
    coefficient: float  # ms for 1 byte at 1 GB
    size_exponent: float
    memory_exponent: float
    constant_ms: float
    output: str  # "linear:<ratio>", "power:<exponent>", "constant:<bytes>", "none:<bytes>"
    hint: IOHint | None


FUNCTIONS = (
    TrueFunction("resize", 1e5, 5e7, 4e-3, 0.9, 0.7, 0.0, "linear:0.3", io.linear()),
    TrueFunction("tokenize", 1e4, 1e8, 1e-3, 1.0, 0.5, 20.0, "power:0.8", io.power(0.8)),
    TrueFunction("reduce", 1e3, 1e6, 5e-2, 0.6, 0.2, 0.0, "constant:4096", io.constant(4096)),
    TrueFunction("matmul", 1e5, 2e7, 1e-5, 1.5, 1.0, 0.0, "linear:1.0", None),
    TrueFunction("fetch", 0, 0, 50.0, 0.0, 0.1, 0.0, "none:5e6", None),
)
NOISE = 0.15  # lognormal sigma of every time
STRAGGLERS = 0.02  # share of executions slowed 2-4x
DOWNLOAD = (3.0, 60.0, 0.6)  # latency ms, MB/s at 1 GB, memory exponent
UPLOAD = (5.0, 40.0, 0.6)
COLD = (400.0, -0.3)  # ms at 1 GB, memory exponent
WARM_MS = 8.0


def _output_bytes(fn: TrueFunction, x: int, rng: np.random.Generator) -> int:
    kind, value = fn.output.split(":")
    v = float(value)
    if kind == "linear":
        return int(v * x)
    if kind == "power":
        return int(x ** v * math.exp(rng.normal(0, 0.05)))
    if kind == "constant":
        return int(v)
    return int(v * math.exp(rng.normal(0, 0.5)))


def _transfer_ms(nbytes: int, memory: int, params: tuple[float, float, float],
                 rng: np.random.Generator) -> float:
    latency, mb_s, exponent = params
    bandwidth = mb_s * 1e3 * (memory / 1024) ** exponent  # bytes per ms
    return (latency + nbytes / bandwidth) * math.exp(rng.normal(0, NOISE))


def synthetic_records(seed: int, runs: int, memories: tuple[int, ...],
                      tasks_per_function: int = 8) -> list[MetricsRecord]:
    """Runs of a workflow of the :data:`FUNCTIONS`, each task on a random memory size."""
    rng = np.random.default_rng(seed)
    records = []
    for run in range(runs):
        for fn in FUNCTIONS:
            for i in range(tasks_per_function):
                memory = int(rng.choice(memories))
                x = 0 if fn.max_bytes == 0 else int(
                    10 ** rng.uniform(math.log10(fn.min_bytes), math.log10(fn.max_bytes)))
                exec_ms = (fn.constant_ms + fn.coefficient * max(x, 1) ** fn.size_exponent
                           * (memory / 1024) ** -fn.memory_exponent)
                exec_ms *= math.exp(rng.normal(0, NOISE))
                if rng.random() < STRAGGLERS:
                    exec_ms *= rng.uniform(2, 4)
                out = _output_bytes(fn, x, rng)
                parts = np.diff(np.sort(np.r_[0, rng.integers(0, x + 1, size=2), x]))
                downloads = tuple(
                    Transfer(int(n), _transfer_ms(int(n), memory, DOWNLOAD, rng),
                             streamed=bool(rng.random() < 0.05))
                    for n in parts if n > 0)
                uploads = (Transfer(out, _transfer_ms(out, memory, UPLOAD, rng)),)
                state = str(rng.choice(["cold", "warm", "none"], p=[0.2, 0.3, 0.5]))
                startup_ms = {"cold": COLD[0] * (memory / 1024) ** COLD[1],
                              "warm": WARM_MS, "none": 0.0}[state]
                if state != "none":
                    startup_ms *= math.exp(rng.normal(0, NOISE))
                records.append(MetricsRecord(
                    "bench", f"run-{run:03d}", "uniform", f"{fn.name}-{i}", fn.name, memory,
                    x, out, exec_ms, downloads, uploads, state, startup_ms))  # type: ignore[arg-type]
    return records


SIM_MEMORIES = (256, 512, 1024, 1769)
SIM_CPU_EXPONENT = 0.8  # true memory exponent below one vCPU (the baseline assumes 0.3)
# Known execution-time laws per function name: ms at the reference memory = c * bytes ** b.
SIM_LAWS = {"add": (2e-4, 1.0), "multiply": (1e-5, 1.5), "sum_blocks": (5e-4, 0.9),
            "assemble": (1e-3, 0.8), "blur": (2e-4, 1.1), "edges": (4e-4, 1.0),
            "downsample": (1e-3, 0.7), "stats": (5e-3, 0.6)}
SIM_ROOT_MS = 40.0


def _known_profiles(wf: Workflow, scale: int) -> dict[str, TaskProfile]:
    """Profiles following :data:`SIM_LAWS`; root outputs grow with ``scale``.

    Outputs follow each function's io hint (or keep the input size), so inputs differ
    between tasks and between workload sizes, and the true exponents are known.
    """
    out: dict[str, TaskProfile] = {}
    for tid in wf.topological_order:
        node = wf.node(tid)
        name = node.func.name.rsplit(".", 1)[-1]
        ups = wf.upstream(tid)
        if not ups:
            out[tid] = TaskProfile(SIM_ROOT_MS, 4096 * scale)
            continue
        nbytes = sum(out[u].output_bytes for u in ups)
        c, b = SIM_LAWS.get(name, (1e-3, 1.0))
        hint = node.func.io
        size = int(hint.output_bytes(nbytes)) if hint is not None else nbytes
        out[tid] = TaskProfile(c * nbytes ** b, max(size, 1))
    return out


def simulated_records(seed: int, runs: int, memories: tuple[int, ...] = SIM_MEMORIES
                      ) -> tuple[list[MetricsRecord], dict[str, IOHint]]:
    """Metrics of simulated runs of built-in workload shapes whose sizes vary by run.

    Each run picks a size per workload; task profiles follow known laws
    (:data:`SIM_LAWS`), execution time grows as ``memory ** -0.8`` below one vCPU, with
    lognormal noise; one planned worker per task so that every output crosses storage,
    cycling through ``memories``.
    """
    from faasplan.experiments.planning import io_hints
    from faasplan.simulator import GroundTruth, Platform, simulate
    from faasplan.worker import Placement
    from faasplan.workloads import gemm, image_pipeline, tree_reduction

    rng = np.random.default_rng(seed)
    platform = Platform(cpu_exponent=SIM_CPU_EXPONENT)
    shapes = [tree_reduction(leaves=16), gemm(n=256, block=64), image_pipeline(images=4)]
    records: list[MetricsRecord] = []
    hints: dict[str, IOHint] = {}
    for wf in shapes:
        hints.update(io_hints(wf))
    for run in range(runs):
        memory = memories[run % len(memories)]
        for wf in shapes:
            scale = int(2 ** rng.integers(0, 7))
            truth = GroundTruth(wf, platform, profiles=_known_profiles(wf, scale), noise=NOISE)
            placements = {t: Placement(f"w-{t}", memory) for t in wf}
            trace = simulate(wf, placements, platform, seed=seed * 1000 + run, behaviour=truth)
            records += trace.metrics(run_id=f"run-{run:03d}", planner="bench")
    return records, hints


def metrics_source(seed: int, runs: int, memories: tuple[int, ...]) -> pd.DataFrame:
    """The metrics the benchmark evaluates on; the one place to swap in simulator output."""
    return records_to_frame(synthetic_records(seed, runs, memories))


def _exponents_table(df: pd.DataFrame, hints: dict[str, IOHint]) -> pd.DataFrame:
    predictor = fit(df, hints)
    rows = []
    for fn in FUNCTIONS:
        model = predictor.exec_model(fn.name)
        rows.append({"function": fn.name, "size_exp_true": fn.size_exponent,
                     "size_exp_fit": model.size_exponent,
                     "mem_exp_true": fn.memory_exponent, "mem_exp_fit": model.memory_exponent,
                     "const_true": fn.constant_ms, "const_fit": model.constant_ms})
    for direction, (latency, mb_s, exponent) in (("download", DOWNLOAD), ("upload", UPLOAD)):
        tm = predictor.transfer_model(direction)  # type: ignore[arg-type]
        rows.append({"function": direction, "mem_exp_true": exponent,
                     "mem_exp_fit": tm.memory_exponent, "const_true": latency,
                     "const_fit": tm.latency_ms, "bw_true_mb_s": mb_s,
                     "bw_fit_mb_s": tm.bandwidth_mb_s})
    cold = predictor.startup_model("cold")
    rows.append({"function": "cold start", "mem_exp_true": COLD[1],
                 "mem_exp_fit": cold.memory_exponent})
    return pd.DataFrame(rows)


def _query_speed_us(df: pd.DataFrame, hints: dict[str, IOHint], calls: int = 100_000
                    ) -> dict[str, float]:
    predictor = fit(df, hints)
    timings = {}
    queries = {
        "execution_ms": lambda: predictor.execution_ms("resize", 1e6, 1536, "p90"),
        "output_bytes": lambda: predictor.output_bytes("tokenize", 1e6),
        "transfer_ms": lambda: predictor.transfer_ms(1e6, 1024, "download", "p95"),
        "startup_ms": lambda: predictor.startup_ms(1536, "cold", "p90"),
    }
    for name, query in queries.items():
        start = time.perf_counter()
        for _ in range(calls):
            query()
        timings[name] = (time.perf_counter() - start) / calls * 1e6
    return timings


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memories", choices=["four", "spread"], default="four",
                        help="four sizes (512-3008 MB) or 46 sizes 128-3008 MB in 64 MB steps")
    parser.add_argument("--source", choices=["synthetic", "simulated"], default="synthetic",
                        help="synthetic records from known models, or simulated runs of "
                             "built-in workloads (profiled in this process)")
    args = parser.parse_args(argv)
    if args.source == "simulated":
        return _main_simulated(args.seed, args.runs)
    memories = FOUR_MEMORIES if args.memories == "four" else SPREAD_MEMORIES
    hints = {fn.name: fn.hint for fn in FUNCTIONS if fn.hint is not None}

    start = time.perf_counter()
    df = metrics_source(args.seed, args.runs, memories)
    generated = time.perf_counter() - start
    start = time.perf_counter()
    fit(df, hints)
    fitted = time.perf_counter() - start
    start = time.perf_counter()
    report = accuracy_report(df, hints)
    cv = time.perf_counter() - start

    pd.set_option("display.width", 160)
    pd.set_option("display.float_format", lambda v: f"{v:.3g}")
    print(f"{len(df)} records, {args.runs} runs, memories={args.memories}, seed={args.seed}")
    print("\nleave-one-run-out accuracy (MdAPE %, p90 coverage %):")
    print(report.to_string(index=False))
    print("\nfitted vs true parameters (all runs):")
    print(_exponents_table(df, hints).to_string(index=False))
    print(f"\ngenerate {generated:.2f} s, fit {fitted * 1e3:.0f} ms, "
          f"cross-validation {cv:.2f} s")
    for name, us in _query_speed_us(df, hints).items():
        print(f"{name}: {us:.2f} us/call")
    return 0


def _main_simulated(seed: int, runs: int) -> int:
    start = time.perf_counter()
    records, hints = simulated_records(seed, runs)
    df = records_to_frame(records)
    generated = time.perf_counter() - start
    report = accuracy_report(df, hints)
    pd.set_option("display.width", 160)
    pd.set_option("display.float_format", lambda v: f"{v:.3g}")
    print(f"{len(df)} records from {runs} simulated runs (memories {SIM_MEMORIES} MB, true "
          f"memory exponent {SIM_CPU_EXPONENT}), seed={seed}, generated in {generated:.1f} s")
    print("true size exponents: " + ", ".join(f"{k} {b}" for k, (_, b) in SIM_LAWS.items()))
    print("\nleave-one-run-out accuracy (MdAPE %, p90 coverage %):")
    print(report.to_string(index=False))
    predictor = fit(df, hints)
    print("\nfitted execution-time exponents (true memory exponent "
          f"{SIM_CPU_EXPONENT}; the baseline fixes 0.3 and size exponent 1):")
    for fn in predictor.functions:
        m = predictor.exec_model(fn)
        print(f"  {fn.rsplit('.', 1)[-1]:<16} size {m.size_exponent:6.3f}  "
              f"memory {m.memory_exponent:6.3f}  samples {m.samples}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
