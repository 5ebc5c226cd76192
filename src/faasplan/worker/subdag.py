"""Sizes of every task's subDAG at once: whether a delegation carries its subDAG inline.

Walking the descendants of each delegated root (up to the inline threshold) dominated
simulations of 10k-task runs; :func:`subdag_sizes` computes the answers for all tasks in
one reverse-topological pass, with descendant sets as integer bitsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faasplan.worker.spec import RunSpec

# Size estimates used when no codec measurement is supplied: a task entry and one
# function's code in an encoded DAG.
DEFAULT_TASK_NBYTES = 160
DEFAULT_CODE_NBYTES = 1500


def subdag_sizes(spec: RunSpec) -> dict[str, int]:
    """Per task, the encoded size of its subDAG, capped just above the inline threshold.

    The exact encoded size of the task and its descendants when it fits the inline
    threshold, else ``threshold + 1`` (above the threshold only the comparison matters,
    as for the capped walk).
    """
    cap = spec.options.inline_dag_bytes
    order = spec.order
    tasks = spec.tasks
    # Bit i stands for the i-th task in reverse topological order: descendants of a task
    # come before it, so small subDAGs (near the sinks) have short bitsets.
    index = {tid: i for i, tid in enumerate(reversed(order))}
    groups: dict[int, int] = {}  # task entry size -> bitset of the tasks with that size
    for tid, i in index.items():
        w = spec.task_nbytes.get(tid, DEFAULT_TASK_NBYTES)
        groups[w] = groups.get(w, 0) | (1 << i)
    functions: dict[str, int] = {}
    for tid in order:
        functions.setdefault(tasks[tid].function, len(functions))
    code = [spec.code_nbytes.get(fn, DEFAULT_CODE_NBYTES) for fn in functions]
    reach: dict[str, tuple[int, int]] = {}  # tasks whose subDAG fits: (tasks, functions)
    sizes: dict[str, int] = {}
    for tid in reversed(order):
        info = tasks[tid]
        bits = 1 << index[tid]
        fbits = 1 << functions[info.function]
        fits = True
        for d in info.downstream:
            below = reach.get(d)
            if below is None:
                fits = False
                break
            bits |= below[0]
            fbits |= below[1]
        total = cap + 1
        if fits:
            total = _tasks_nbytes(bits, groups) + _code_nbytes(fbits, code)
        if total <= cap:
            reach[tid] = (bits, fbits)
            sizes[tid] = total
        else:
            sizes[tid] = cap + 1
    return sizes


def _tasks_nbytes(bits: int, groups: dict[int, int]) -> int:
    if len(groups) == 1:
        (w,) = groups
        return w * bits.bit_count()
    return sum(w * (bits & mask).bit_count() for w, mask in groups.items())


def _code_nbytes(fbits: int, code: list[int]) -> int:
    total = 0
    f = 0
    while fbits:
        if fbits & 1:
            total += code[f]
        fbits >>= 1
        f += 1
    return total


def union_nbytes(spec: RunSpec, roots: tuple[str, ...]) -> int:
    """Encoded size of every task below any of ``roots`` (capped as :func:`subdag_sizes`).

    What a planned worker whose tasks do not all descend from its entry must hold: the
    subDAGs below each of its tasks, since it may start any of their dependents.
    """
    cap = spec.options.inline_dag_bytes
    seen: set[str] = set()
    functions: set[str] = set()
    total = 0
    stack = list(roots)
    while stack:
        tid = stack.pop()
        if tid in seen:
            continue
        seen.add(tid)
        info = spec.tasks[tid]
        total += spec.task_nbytes.get(tid, DEFAULT_TASK_NBYTES)
        if info.function not in functions:
            functions.add(info.function)
            total += spec.code_nbytes.get(info.function, DEFAULT_CODE_NBYTES)
        if total > cap:
            return cap + 1
        stack.extend(info.downstream)
    return total
