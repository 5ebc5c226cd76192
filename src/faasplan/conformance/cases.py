"""Random DAGs and random valid plans for the conformance harness, from one seed.

:func:`random_case` builds a small workflow whose tasks return byte strings of chosen
sizes (some below the carry threshold, some above, some large enough to stream in
several chunks) and a plan that mixes flexible and planned workers, memory sizes and
every optimization, valid by construction (:meth:`faasplan.planners.Plan.validate`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faasplan.worker import Opt, Placement
from faasplan.workflow import Workflow, task

SIZES = (16, 2_000, 40_000, 600_000)
"""Output sizes drawn for the tasks: carried, small, stored, streamed in chunks."""

MEMORIES = (512, 1024, 2048)

FLEXIBLE_OPTS = (Opt.PRELOAD, Opt.PREWARM, Opt.CLUSTER, Opt.DELAYED_IO, Opt.STREAM,
                 Opt.ASYNC_UPLOAD)
PLANNED_OPTS = (Opt.PRELOAD, Opt.PREWARM, Opt.STREAM, Opt.ASYNC_UPLOAD)


@task
def produce(size: int, *inputs: bytes) -> bytes:
    """A task of a random case: ``size`` bytes that depend on its inputs' lengths."""
    fill = (sum(len(x) for x in inputs) + size) % 251
    return bytes([fill]) * size


def random_case(seed: int, *, max_tasks: int = 10
                ) -> tuple[Workflow, dict[str, Placement]]:
    """A random DAG of 2..``max_tasks`` tasks and a random valid plan for it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, max_tasks + 1))
    nodes: list[Any] = []
    parents: list[list[int]] = []
    for i in range(n):
        k = 0 if i == 0 else int(rng.integers(0, min(i, 3) + 1))
        ups = sorted({int(u) for u in rng.choice(i, size=k, replace=False)}) if k else []
        parents.append(ups)
        size = int(rng.choice(SIZES, p=(0.35, 0.25, 0.3, 0.1)))
        nodes.append(produce(size, *(nodes[u] for u in ups)))
    children = [[j for j in range(n) if i in parents[j]] for i in range(n)]
    sinks = [nodes[i] for i in range(n) if not children[i]]
    wf = Workflow(sinks, name=f"case-{seed}")
    ids = {id(node): tid for tid, node in wf.tasks.items()}
    tids = [ids[id(node)] for node in nodes]

    worker_of: list[str | None] = []
    memory_of: dict[str, int] = {}
    delayed_into: set[int] = set()
    placements: dict[str, Placement] = {}
    for i in range(n):
        options: list[str | None] = [None, f"w{i}"]
        options += sorted({w for u in parents[i] if (w := worker_of[u]) is not None})
        worker = options[int(rng.integers(len(options)))]
        worker_of.append(worker)
        memory = int(rng.choice(MEMORIES))
        if worker is not None:
            memory = memory_of.setdefault(worker, memory)
        pool = FLEXIBLE_OPTS if worker is None else PLANNED_OPTS
        opts = {o for o in pool if rng.random() < 0.3}
        if Opt.DELAYED_IO in opts:
            fan_ins = [c for c in children[i] if len(parents[c]) > 1]
            if any(c in delayed_into for c in fan_ins):
                opts.discard(Opt.DELAYED_IO)
            else:
                delayed_into.update(fan_ins)
        placements[tids[i]] = Placement(worker, memory, frozenset(opts))
    return wf, placements
