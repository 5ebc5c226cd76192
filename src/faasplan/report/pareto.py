"""Pareto front of (cost, makespan) points: which planners no other planner beats on both."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, both coordinates minimised.

    A point dominates another when it is no worse in both coordinates and strictly better
    in at least one, so identical points are all kept. Points with a NaN coordinate are
    never on the front.

    Parameters
    ----------
    points : sequence of (x, y)
        For a planner comparison ``(cost_usd, makespan_p95_ms)``.

    Returns
    -------
    list of int
        Indices into ``points`` ordered along the front: increasing ``x`` (hence
        decreasing ``y``), ties by index.

    Examples
    --------
    >>> pareto_front([(1.0, 9.0), (2.0, 4.0), (3.0, 5.0), (4.0, 1.0)])
    [0, 1, 3]
    """
    valid = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    order = sorted(valid, key=lambda i: (points[i][0], points[i][1], i))
    front: list[int] = []
    best_y = math.inf
    for i in order:
        x, y = points[i]
        last = points[front[-1]] if front else None
        # Sorted by x then y: a point is dominated unless it lowers the best y seen so far,
        # or repeats the last front point exactly (duplicates dominate nothing).
        if y < best_y or (last is not None and (x, y) == (last[0], last[1])):
            front.append(i)
            best_y = min(best_y, y)
    return front
