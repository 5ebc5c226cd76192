"""Synthetic layered DAGs: the benchmarks' and tests' scalable workload."""

from __future__ import annotations

import numpy as np

from faasplan.workflow import TaskFunction, TaskNode, TaskProfile, Workflow
from faasplan.workflow.wfformat import synthetic_task


def layered(tasks: int, width: int = 100, seed: int = 0, *, stages: int = 4,
            exec_ms: float = 200.0, max_output_log2: float = 20.0,
            name: str | None = None) -> Workflow:
    """A layered DAG of ``tasks`` synthetic tasks, ``width`` per layer.

    Each task reads 1-3 outputs of the layer above; execution times are lognormal (sigma
    0.5) around ``exec_ms``, outputs log-uniform from 1 KiB to ``2 ** max_output_log2``
    bytes; ``stages`` function names rotate by layer. Seeded: the same arguments give the
    same workflow. Tasks sleep for their profile's time when run for real.

    >>> wf = layered(250, width=50)
    >>> len(wf), len(layered(250, width=50).topological_order) == len(wf)
    (250, True)
    """
    if tasks < 1 or width < 1 or stages < 1:
        raise ValueError(f"layered: tasks, width and stages must be >= 1, got {tasks!r}, "
                         f"{width!r}, {stages!r}")
    rng = np.random.default_rng(seed)
    functions = [TaskFunction(synthetic_task, name=f"stage{k}") for k in range(stages)]
    layers: list[list[TaskNode]] = []
    n = 0
    while n < tasks:
        fn = functions[len(layers) % len(functions)]
        layer = []
        for _ in range(min(width, tasks - n)):
            parents: list[TaskNode] = []
            if layers:
                prev = layers[-1]
                count = min(len(prev), int(rng.integers(1, 4)))
                parents = [prev[i] for i in rng.choice(len(prev), size=count, replace=False)]
            profile = TaskProfile(float(exec_ms * rng.lognormal(0.0, 0.5)),
                                  int(2 ** rng.uniform(10, max_output_log2)))
            layer.append(fn(*parents, task_id=f"t{n}", profile=profile,
                            runtime_ms=profile.exec_ms, output_bytes=profile.output_bytes))
            n += 1
        layers.append(layer)
    children = {id(p) for layer in layers for node in layer for p in node.upstream}
    sinks = [node for layer in layers for node in layer if id(node) not in children]
    return Workflow(sinks, name=name or f"layered_{tasks}t", detect=False)
