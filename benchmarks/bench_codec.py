"""Encoded workflow sizes, with and without storing each function's code once.

Run from the project root::

    python benchmarks/bench_codec.py [--repeat 20]

Prints a Markdown table: blob bytes with code stored once per function and with code
pickled into every task, their ratio, bytes per task, encode/decode time (best of
``--repeat``), and the blob of one leaf's sub-workflow (the leaf and everything
downstream of it), which is what an invocation carries for that branch.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from faasplan.workflow import Workflow
from faasplan.workflow.codec import decode, encode
from faasplan.workloads import gemm, image_pipeline, tree_reduction


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest of ``repeat`` runs of ``fn``, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def row(label: str, wf: Workflow, leaf: str, repeat: int) -> list[str]:
    """One table row for ``wf``; ``leaf`` roots the sub-workflow that is measured."""
    once = encode(wf)
    per_task = encode(wf, dedupe_code=False)
    functions = {wf.tasks[t].func.name for t in wf}
    sub = wf.subdag(leaf)
    enc_ms = best_ms(lambda: encode(wf), repeat)
    dec_ms = best_ms(lambda: decode(once.blob, once.payloads), repeat)
    return [label, str(len(wf)), str(len(functions)), f"{once.nbytes:,}",
            f"{per_task.nbytes:,}", f"{per_task.nbytes / once.nbytes:.1f}x",
            f"{once.nbytes / len(wf):.0f}", f"{once.payload_bytes:,}",
            f"{enc_ms:.2f}", f"{dec_ms:.2f}",
            f"{leaf} ({len(sub)} tasks): {encode(sub).nbytes:,}"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timing repeats (best kept)")
    args = parser.parse_args(argv)
    header = ["workflow", "tasks", "functions", "blob B (code once)", "blob B (code per task)",
              "ratio", "B/task", "payload B", "encode ms", "decode ms", "leaf subDAG blob B"]
    rows = [
        row("tree_reduction(leaves=64)", tree_reduction(leaves=64), "make_leaf-0", args.repeat),
        row("gemm(n=256, block=64)", gemm(n=256, block=64), "make_block-0", args.repeat),
        row("image_pipeline(images=4)", image_pipeline(images=4), "generate-0", args.repeat),
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nFor reference, the predecessor system encoded its image-transform DAG to 35 KB.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
