"""Blocked matrix multiply ``C = A @ B``: make blocks, multiply pairs, sum, assemble."""

from __future__ import annotations

import numpy as np

from faasplan.workflow import TaskNode, Workflow, io, task
from faasplan.workloads._checks import positive_int


def matrix_entries(matrix: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Entries of input matrix ``"A"`` or ``"B"`` at the given row/column indices.

    Small integers over a power of two, so block products are exact in float64 and the
    whole matrix is known in closed form:
    ``A[r, c] = ((3r + 5c) % 17 - 8) / 8`` and ``B[r, c] = ((7r + 2c) % 19 - 9) / 16``.
    """
    r, c = np.meshgrid(rows, cols, indexing="ij")
    if matrix == "A":
        return ((3 * r + 5 * c) % 17 - 8) / 8.0
    if matrix == "B":
        return ((7 * r + 2 * c) % 19 - 9) / 16.0
    raise ValueError(f"matrix must be 'A' or 'B', got {matrix!r}")


# Output size follows the block parameter, not input bytes: no hint.
@task
def make_block(matrix: str, row: int, col: int, block: int) -> np.ndarray:
    """Block (``row``, ``col``) of size ``block`` x ``block`` of matrix ``matrix``."""
    rows = np.arange(row * block, (row + 1) * block)
    cols = np.arange(col * block, (col + 1) * block)
    return matrix_entries(matrix, rows, cols)


@task(io=io.linear(0.5))
def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of two square blocks (two blocks in, one out)."""
    return a @ b


# k equal blocks in, one out: ratio 1/k, fitted from runs.
@task(io=io.linear())
def sum_blocks(parts: list[np.ndarray]) -> np.ndarray:
    """Sum of the partial products of one block of C."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


@task(io=io.linear(1.0))
def assemble(blocks: list[list[np.ndarray]]) -> np.ndarray:
    """The full matrix from its grid of blocks (row-major)."""
    return np.block(blocks)


def gemm(n: int = 256, block: int = 64) -> Workflow:
    """Blocked ``n`` x ``n`` matrix product; the sink returns ``C = A @ B``.

    With ``k = n // block``: ``2 k^2`` block makers, ``k^3`` block products, ``k^2`` sums
    (each taking a ``list`` of products) and one ``assemble`` (taking a ``list[list]``
    grid). The defaults give a 4 x 4 grid: 113 tasks.

    Parameters
    ----------
    n : int
        Matrix order, >= 1 and a multiple of ``block``.
    block : int
        Block order, >= 1. ``A`` and ``B`` are given by :func:`matrix_entries`.

    >>> from faasplan.workflow.local import run_local
    >>> len(gemm(8, 4)), run_local(gemm(8, 4)).shape
    (21, (8, 8))
    """
    positive_int("gemm", "n", n)
    positive_int("gemm", "block", block)
    if n % block:
        raise ValueError(f"gemm: n={n} is not divisible by block={block}; "
                         f"choose a block size that divides n")
    k = n // block
    a = [[make_block("A", i, j, block) for j in range(k)] for i in range(k)]
    b = [[make_block("B", i, j, block) for j in range(k)] for i in range(k)]
    c: list[list[TaskNode]] = [
        [sum_blocks([multiply(a[i][m], b[m][j]) for m in range(k)]) for j in range(k)]
        for i in range(k)]
    return Workflow(assemble(c), name="gemm")
