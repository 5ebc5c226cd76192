"""Tree reduction: leaves make numpy arrays, pairwise ``add`` tasks sum them to one array."""

from __future__ import annotations

import numpy as np

from faasplan.workflow import TaskNode, Workflow, io, task
from faasplan.workloads._checks import positive_int


# A generator's output size is set by its parameters, not by input bytes: no hint,
# profiling provides the size.
@task
def make_leaf(index: int, size: int) -> np.ndarray:
    """Leaf ``index``: the float64 values ``index * size, ..., (index + 1) * size - 1``."""
    return np.arange(index * size, (index + 1) * size, dtype=np.float64)


@task(io=io.linear(0.5))
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise sum of two equal-shape arrays (two inputs in, one of the same size out)."""
    return a + b


def tree_reduction(leaves: int = 64, leaf_size: int = 1024) -> Workflow:
    """A binary reduction tree of ``2 * leaves - 1`` tasks.

    Leaf ``i`` holds ``i * leaf_size + j`` at position ``j``; levels add neighbours pairwise
    (an odd one out moves up unchanged), so the sink returns the array whose element ``j`` is
    ``leaf_size * leaves * (leaves - 1) / 2 + leaves * j``.

    Parameters
    ----------
    leaves : int
        Number of leaf tasks, >= 1.
    leaf_size : int
        Elements per leaf array, >= 1 (8 bytes each).

    >>> from faasplan.workflow.local import run_local
    >>> run_local(tree_reduction(leaves=4, leaf_size=3)).tolist()
    [18.0, 22.0, 26.0]
    """
    positive_int("tree_reduction", "leaves", leaves)
    positive_int("tree_reduction", "leaf_size", leaf_size)
    level: list[TaskNode] = [make_leaf(i, leaf_size) for i in range(leaves)]
    while len(level) > 1:
        paired = [add(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
        level = paired + level[len(level) - len(level) % 2:]
    return Workflow(level[0], name="tree_reduction")
