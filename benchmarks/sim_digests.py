"""Digests of many simulated runs, to check that a change to the simulator keeps its results.

Run from the project root, once before a change and once after (or with and without
``FAASPLAN_PURE_PYTHON=1``), then compare the two files::

    python benchmarks/sim_digests.py before.json
    python benchmarks/sim_digests.py after.json --compare before.json

Cases: the 400 random DAGs and valid plans of the conformance harness
(:func:`faasplan.conformance.cases.random_case`, seeds 0-399), layered DAGs of 300 and
1,000 tasks under WUKONG (seeds 0-2), and every trace shipped with faasplan under WUKONG
(seeds 0-1). A run's digest covers its makespan, cost, cold starts, stored and client
bytes, invocations and every column of ``Trace.tasks`` and ``Trace.workers`` at full float
precision. ``--compare`` prints how many cases differ and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from faasplan.conformance.cases import random_case
from faasplan.data import trace_path
from faasplan.simulator import Simulator
from faasplan.trace import Trace
from faasplan.workflow.wfformat import load_wfformat
from faasplan.workloads import layered

TRACES = ("montage_58t", "epigenomics_41t", "cycles_67t", "blast_43t", "montage-v14_58t",
          "epigenomics_983t", "seismology_1001t", "montage_1738t")


def digest(trace: Trace) -> str:
    """A short hash of everything a run's trace reports."""
    h = hashlib.sha256(repr((trace.makespan_ms, trace.cost_usd, trace.cold_starts,
                             trace.storage_bytes, trace.invocations,
                             trace.client_bytes)).encode())
    for frame in (trace.tasks, trace.workers):
        h.update(frame.to_csv(float_format=repr).encode())
    return h.hexdigest()[:16]


def digests() -> dict[str, str]:
    """Every case's digest, by case name."""
    out: dict[str, str] = {}
    for seed in range(400):
        wf, plan = random_case(seed)
        out[f"random {seed}"] = digest(Simulator(wf).run(plan, seed=seed))
    for n in (300, 1000):
        sim = Simulator(layered(n, 30, 1))
        for seed in range(3):
            out[f"layered {n} seed {seed}"] = digest(sim.run(seed=seed))
    for stem in TRACES:
        sim = Simulator(load_wfformat(trace_path(stem)))
        for seed in range(2):
            out[f"{stem} seed {seed}"] = digest(sim.run(seed=seed))
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the digests to OUT; with ``--compare``, report the cases that differ."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--compare", type=Path, help="an earlier OUT to compare with")
    args = parser.parse_args(argv)
    ours = digests()
    args.out.write_text(json.dumps(ours, indent=0))
    print(f"{len(ours)} cases -> {args.out}")
    if args.compare is None:
        return 0
    try:
        theirs = json.loads(args.compare.read_text())
    except (OSError, ValueError) as exc:
        print(f"sim_digests.py: cannot read {args.compare}: {exc}", file=sys.stderr)
        return 2
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    print(f"{len(differ)} of {len(ours)} cases differ from {args.compare}"
          + (f": {', '.join(differ[:10])}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
