"""faasplan's simulator against SimGrid 3.32 on the same runs: time and makespan.

Run from the project root (needs SimGrid's C++ library and g++)::

    apt-get install -y libsimgrid-dev simgrid      # Debian/Ubuntu, once
    python benchmarks/bench_simgrid.py
    python benchmarks/bench_simgrid.py --cases "layered 1k" "tree 8191" --repeat 5

Cases: the layered DAGs of 1k and 10k tasks and the 8,191-task tree reduction of
``bench_simulator.py``, and the traces montage 1,738 and epigenomics 983 (shipped with
faasplan or in ``../shared/traces``; a missing one is skipped with a note). Every case is
the WUKONG plan (all tasks flexible) on the default :class:`~faasplan.Platform`, seed 0.

What each tool is given. faasplan simulates the run: its worker logic decides where each
task runs (fan-out invocations, fan-in counters), with the storage, network and FaaS
models. From that run's trace the same work is exported as a DAG of SimGrid activities
(``benchmarks/simgrid/dag_replay.cpp``, s4u activities with dependencies, no actors),
on a star platform: one host per faasplan worker (invocation), each with one link of the
worker's bandwidth (``Platform.worker_bandwidth_mb_s`` at its memory) shared by its uploads
and downloads, and a storage host whose one link has ``storage_bandwidth_mb_s``; CM02
max-min sharing, no cross-traffic, zero link latency. Per task on its worker:

* a delay before it (an exec): from time 0 for a worker the client invoked; from the
  completion of the parent whose output triggered the invocation (invocation, start-up);
  from the previous task's completion on the same worker (the round trips of the
  upload's acknowledgement, the fan-in counter, the invocations it sends) — the lengths
  are faasplan's own, so invocations, start-ups and storage round trips are inputs;
* its downloads (comms storage -> worker), each after the parent's upload; then one
  storage round trip (``storage_latency_ms``; faasplan moves bytes first and pays the round
  trip at the end, which is what this reproduces);
* its execution (an exec of the duration faasplan drew);
* its upload (a comm worker -> storage), whose end makes the output visible;
* for a sink, the delay to its completion notice: the makespan is the latest of those,
  as in faasplan.

So the two runs share tasks, durations, bytes, worker assignment, bandwidths and the
protocol's delays; what SimGrid computes itself is the bandwidth sharing and the timing
that follows from it, and its makespan differs from faasplan's only where those do.

Timing: ``faasplan s`` is the median CPU time of ``--repeat`` calls of
:meth:`Simulator.run` on a reused :class:`Simulator` (after one warm-up run), as in
``bench_simulator.py``; ``SimGrid s`` the median CPU time, measured inside the program, of
building the activities and ``Engine::run`` (``--repeat`` processes; reading the input file
and building the platform not counted), each activity created and started when its last
predecessor ends (``dag_replay --mode=ready``). ``ratio`` = faasplan s / SimGrid s.
``up-front s`` is one run with the whole activity DAG built before ``Engine::run`` and
released by SimGrid's own dependencies (``--mode=upfront``), for DAGs of at most
``--upfront-max`` activities: its time grows about quadratically with the DAG's size in
SimGrid 3.32 (``perf`` puts 90 % of it in one linear list scan inside libsimgrid), so the
larger cases are left out. Both modes give the same makespan (checked).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_simulator import find_trace, layered_dag, tree_dag  # noqa: E402

from faasplan.platform import Platform  # noqa: E402
from faasplan.simulator import Simulator, Trace  # noqa: E402
from faasplan.workflow import Workflow  # noqa: E402
from faasplan.workflow.wfformat import load_wfformat  # noqa: E402

SOURCE = HERE / "simgrid" / "dag_replay.cpp"
APT = "apt-get install -y libsimgrid-dev simgrid"
SIMGRID_CFG = ("--cfg=network/model:CM02", "--cfg=network/crosstraffic:0",
               "--cfg=surf/precision:1e-9", "--cfg=maxmin/precision:1e-9",
               "--log=root.thresh:warning")
TRACES = {"montage 1738": "montage_1738t", "epigenomics 983": "epigenomics_983t"}
DEFAULT_CASES = ("layered 1k", "layered 10k", "tree 8191", "montage 1738", "epigenomics 983")


def build(out_dir: Path) -> Path:
    """Compile ``dag_replay.cpp`` against SimGrid (again only when the source changed).

    Exits with a message naming the apt command when SimGrid's headers or g++ are missing.
    """
    compiler = shutil.which("g++")
    if compiler is None:
        raise SystemExit(f"bench_simgrid: g++ not found; install it and SimGrid: {APT}")
    if not Path("/usr/include/simgrid/s4u.hpp").is_file() and not _header_on_path():
        raise SystemExit(f"bench_simgrid: SimGrid (C++ headers and library) is not "
                         f"installed; on Debian/Ubuntu: {APT}")
    binary = out_dir / "dag_replay"
    if binary.is_file() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, "-O2", "-std=c++17", "-o", str(binary), str(SOURCE), "-lsimgrid"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_simgrid: building {SOURCE.name} failed (is SimGrid 3.32 "
                         f"installed? {APT}):\n{done.stderr[-2000:]}")
    return binary


def _header_on_path() -> bool:
    """Whether the compiler finds ``simgrid/s4u.hpp`` somewhere (a non-Debian install)."""
    probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input="#include <simgrid/s4u.hpp>\n",
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0


@dataclass
class Export:
    """An activity DAG for ``dag_replay``: its text and what it holds."""

    text: str
    activities: int
    hosts: int


def export(wf: Workflow, trace: Trace, platform: Platform) -> Export:
    """The run of ``trace`` as SimGrid activities (see the module docstring).

    Raises
    ------
    ValueError
        A sink has no completion, or a worker's tasks overlap in the trace.
    """
    tasks = trace.tasks.set_index("task")
    workers = trace.workers.set_index("worker")
    host_of = {w: i + 1 for i, w in enumerate(workers.index)}
    transfers = trace.transfers
    rtt_s = float(platform.storage_latency_ms + platform.transfer_overhead_ms) / 1e3
    lines: list[str] = []

    def add(line: str, preds: Sequence[int]) -> int:
        lines.append(f"{line} {len(preds)} {' '.join(map(str, preds))}".rstrip())
        return len(lines) - 1

    done_act: dict[str, int] = {}   # task -> activity whose end makes its output visible
    uploaded: dict[str, int] = {}   # task -> bytes it stored
    sinks: list[int] = []
    rows = tasks.sort_values(["start_ms"], kind="stable")
    last_on: dict[str, str] = {}
    for tid, row in rows.iterrows():
        tid = str(tid)
        worker = str(row.worker)
        host = host_of[worker]
        parents = wf.upstream(tid)
        prev = last_on.get(worker)
        if prev is not None:
            if row.start_ms < tasks.at[prev, "completion_ms"] - 1e-6:
                raise ValueError(f"worker {worker!r}: task {tid!r} starts before {prev!r} ends")
            gap = add(f"E {host} {_s(row.start_ms - tasks.at[prev, 'completion_ms'])}",
                      [done_act[prev]])
        else:
            invoked = float(workers.at[worker, "invoked_ms"])
            trigger = max((p for p in parents if tasks.at[p, "completion_ms"] <= invoked + 1e-9),
                          key=lambda p: tasks.at[p, "completion_ms"], default=None)
            if trigger is None:
                gap = add(f"E {host} {_s(row.start_ms)}", [])
            else:
                since = row.start_ms - tasks.at[trigger, "completion_ms"]
                gap = add(f"E {host} {_s(since)}", [done_act[trigger]])
        last_on[worker] = tid
        downloads, uploads = transfers[tid]
        remote = [p for p in parents if tasks.at[p, "worker"] != worker and uploaded.get(p)]
        ready = [gap]
        for nbytes, _ms, _streamed in downloads:
            nbytes = int(nbytes)
            source = next((p for p in remote if uploaded[p] == nbytes), None)
            preds = [gap] if source is None else [gap, done_act[source]]
            if source is not None:
                remote.remove(source)
            ready.append(add(f"C 0 {host} {nbytes}", preds))
        if downloads:
            ready = [add(f"E {host} {rtt_s!r}", ready[1:])]
        # Every parent's output exists before the task runs (also those read locally).
        ready += [done_act[p] for p in parents if done_act[p] not in ready]
        last = add(f"E {host} {_s(row.exec_end_ms - row.exec_start_ms)}", sorted(set(ready)))
        total = 0
        for nbytes, _ms, _streamed in uploads:
            nbytes = int(nbytes)
            last = add(f"C {host} 0 {nbytes}", [last])
            total += nbytes
        uploaded[tid] = total
        done_act[tid] = last
        if not wf.downstream(tid):
            sinks.append(add(f"E {host} {_s(row.end_ms - row.completion_ms)}", [last]))
    if not sinks:
        raise ValueError("the trace has no sink task")
    storage_bw = platform.storage_bandwidth_mb_s
    storage = 1e15 if math.isinf(storage_bw) else storage_bw * 1e6
    bws = [float(platform.worker_bandwidth_mb_s(float(workers.at[w, "memory_mb"]))) * 1e6
           for w in workers.index]
    bws = [1e15 if math.isinf(b) else b for b in bws]
    head = ["faasplan-simgrid-dag 1", f"hosts {len(bws)} {storage!r}",
            " ".join(repr(b) for b in bws), f"activities {len(lines)}"]
    tail_line = f"sinks {len(sinks)} {' '.join(map(str, sinks))}"
    return Export("\n".join([*head, *lines, tail_line]) + "\n", len(lines), len(bws))


def _s(ms: float) -> str:
    """Milliseconds as seconds, exactly as Python prints the float."""
    return repr(float(ms) / 1e3)


def run_simgrid(binary: Path, dag_file: Path, mode: str = "ready") -> dict[str, float]:
    """One ``dag_replay`` process: its ``key value`` lines as numbers."""
    done = subprocess.run([str(binary), *SIMGRID_CFG, f"--mode={mode}", str(dag_file)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dag_replay failed on {dag_file}: {done.stderr[-2000:]}")
    out = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        out[key] = float(value)
    return out


def cases(names: Sequence[str]) -> tuple[list[tuple[str, Workflow]], list[str]]:
    """The chosen workflows, and notes on the traces that were not found."""
    chosen: list[tuple[str, Workflow]] = []
    notes: list[str] = []
    makers = {"layered 1k": lambda: layered_dag(1_000),
              "layered 10k": lambda: layered_dag(10_000),
              "layered 50k": lambda: layered_dag(50_000),
              "tree 8191": lambda: tree_dag(4096)}
    for name in names:
        if name in makers:
            chosen.append((name, makers[name]()))
        elif name in TRACES:
            path = find_trace(TRACES[name])
            if path is None:
                notes.append(f"{name}: skipped, trace {TRACES[name]!r} is neither shipped with "
                             "faasplan nor in ../shared/traces")
            else:
                chosen.append((name, load_wfformat(path)))
                notes.append(f"{name}: trace {path}")
        else:
            raise SystemExit(f"bench_simgrid: unknown case {name!r}; choose from "
                             f"{', '.join([*makers, *TRACES])}")
    return chosen, notes


def measure(name: str, wf: Workflow, binary: Path, work: Path, repeat: int,
            upfront_max: int) -> list[str]:
    """One table row: tasks, both times, their ratio, both makespans, their difference."""
    sim = Simulator(wf)
    trace = sim.run(seed=0)  # warm-up, and the run exported to SimGrid
    times = []
    for _ in range(repeat):
        start = time.process_time()
        again = sim.run(seed=0)
        times.append(time.process_time() - start)
    if again.makespan_ms != trace.makespan_ms:
        raise RuntimeError(f"{name}: faasplan's runs differ between repeats")
    dag = export(wf, trace, sim.platform)
    dag_file = work / f"{name.replace(' ', '_')}.dag"
    dag_file.write_text(dag.text)
    runs = [run_simgrid(binary, dag_file) for _ in range(repeat)]
    sg_s = statistics.median(r["total_cpu_s"] for r in runs)
    sg_makespan_ms = runs[0]["makespan_s"] * 1e3
    upfront = "not run"
    if dag.activities <= upfront_max:
        whole = run_simgrid(binary, dag_file, "upfront")
        if whole["makespan_s"] != runs[0]["makespan_s"]:
            raise RuntimeError(f"{name}: SimGrid's two modes disagree: "
                               f"{whole['makespan_s']} s and {runs[0]['makespan_s']} s")
        upfront = f"{whole['total_cpu_s']:.3f}"
    fp_s = statistics.median(times)
    rel = (sg_makespan_ms - trace.makespan_ms) / trace.makespan_ms
    return [name, f"{len(wf):,}", f"{dag.hosts:,}", f"{dag.activities:,}", f"{fp_s:.3f}",
            f"{sg_s:.3f}", f"{fp_s / sg_s:.2f}x", upfront, f"{trace.makespan_ms:.3f}",
            f"{sg_makespan_ms:.3f}", f"{rel:+.2e}"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Build the SimGrid program, run every case on both simulators, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per case and tool (the median is reported)")
    parser.add_argument("--upfront-max", type=int, default=25_000,
                        help="largest DAG (activities) also run with SimGrid's own "
                             "dependencies, built up front")
    parser.add_argument("--build-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "faasplan-simgrid",
                        help="where the SimGrid program is compiled and the DAGs written")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    binary = build(args.build_dir)
    chosen, notes = cases(args.cases)
    for note in notes:
        print(f"note: {note}", flush=True)
    header = ["case", "tasks", "workers", "activities", "faasplan s", "SimGrid s", "ratio",
              "up-front s",
              "faasplan makespan ms", "SimGrid makespan ms", "rel. diff"]
    rows = []
    for name, wf in chosen:
        rows.append(measure(name, wf, binary, args.build_dir, args.repeat, args.upfront_max))
        print(table(header, rows[-1:]).split("\n", 2)[2], flush=True)
    print()
    print(f"faasplan: Simulator.run reused, median CPU s of {args.repeat}; "
          f"{_simgrid_version()}: activities built + Engine::run (created when ready), "
          f"median CPU s of {args.repeat} processes; up-front: whole DAG built first, one "
          f"run; {os.cpu_count()} cores.")
    print(table(header, rows))
    return 0


def _simgrid_version() -> str:
    """SimGrid's version string from its header (``SimGrid version 3.32``)."""
    header = Path("/usr/include/simgrid/version.h")
    if not header.is_file():
        return "?"
    for line in header.read_text().splitlines():
        if "SIMGRID_VERSION_STRING" in line and '"' in line:
            return line.split('"')[1]
    return "SimGrid ?"


if __name__ == "__main__":
    raise SystemExit(main())
