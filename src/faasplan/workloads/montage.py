"""A Montage-shaped mosaic: fan-out, fan-in, fan-out, fan-in on small numpy tiles.

Overlapping tiles of one sky image each carry an unknown background offset. ``project``
makes the tiles, ``diff_fit`` measures the offset difference of each neighbouring pair,
``concat_fits`` and ``bg_model`` turn those into one offset per tile, ``background`` removes
it from each tile and ``add_mosaic`` averages the corrected tiles into one image.
"""

from __future__ import annotations

import numpy as np

from faasplan.workflow import Workflow, io, task
from faasplan.workloads._checks import positive_int


def sky(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The true sky at the given pixel indices: ``sin(r/5) + cos(c/7) + sin((r + c)/11) / 2``."""
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return np.sin(r / 5) + np.cos(c / 7) + 0.5 * np.sin((r + c) / 11)


# Output size follows the tile parameter, not input bytes: no hint.
@task
def project(index: int, tile: int, overlap: int, seed: int, noise: float) -> np.ndarray:
    """Tile ``index``: the sky's columns from ``index * (tile - overlap)``, plus the tile's
    background offset (uniform in [-1, 1)) and Gaussian noise of std ``noise``."""
    rng = np.random.default_rng([seed, index])
    start = index * (tile - overlap)
    image = sky(np.arange(tile), np.arange(start, start + tile))
    return image + rng.uniform(-1.0, 1.0) + noise * rng.standard_normal(image.shape)


@task(io=io.constant(8))
def diff_fit(pair: tuple[np.ndarray, np.ndarray], overlap: int) -> np.float64:
    """Offset of the left tile relative to the right one, from their shared columns."""
    left, right = pair
    return np.float64(np.mean(left[:, -overlap:] - right[:, :overlap]))


@task(io=io.linear(1.0))
def concat_fits(fits: list[np.float64]) -> np.ndarray:
    """The pairwise offset differences as one array, in tile order."""
    return np.array(fits, dtype=np.float64)


# width - 1 differences in, width offsets out: ratio fitted from runs.
@task(io=io.linear())
def bg_model(diffs: np.ndarray) -> np.ndarray:
    """Per-tile offsets relative to tile 0 (the chain of differences, summed)."""
    return np.concatenate([[0.0], -np.cumsum(diffs)])


# One tile and the small model in, one tile out: ratio just under 1, fitted from runs.
@task(io=io.linear())
def background(tile: np.ndarray, model: np.ndarray, index: int) -> np.ndarray:
    """The tile with its modelled offset removed."""
    return tile - model[index]


# Overlaps are counted once in the mosaic, so it is smaller than the tiles' sum.
@task(io=io.linear())
def add_mosaic(placed: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """The mean of the tiles placed at their starting columns."""
    rows, width = placed[0][1].shape
    cols = max(start + tile.shape[1] for start, tile in placed)
    total = np.zeros((rows, cols))
    count = np.zeros(cols)
    for start, tile in placed:
        total[:, start:start + width] += tile
        count[start:start + width] += 1
    return total / count


def montage_like(width: int = 8, tile: int = 32, overlap: int = 8, seed: int = 0,
                 noise: float = 0.01) -> Workflow:
    """Mosaic of ``width`` overlapping ``tile`` x ``tile`` tiles: ``3 * width + 2`` tasks.

    ``diff_fit`` takes a ``tuple`` of two tiles, ``concat_fits`` a ``list`` of fits and
    ``add_mosaic`` a ``list`` of ``(column, tile)`` tuples. The sink returns a
    ``tile`` x ``(width - 1) * (tile - overlap) + tile`` image equal to the sky plus tile
    0's offset, up to the noise.

    Parameters
    ----------
    width : int
        Number of tiles, >= 1.
    tile : int
        Tile side in pixels, >= 2.
    overlap : int
        Columns shared by neighbouring tiles, 1 <= overlap < tile.
    seed : int
        Seed of the offsets and noise, >= 0.
    noise : float
        Standard deviation of the pixel noise, >= 0.

    >>> len(montage_like(width=4))
    14
    """
    positive_int("montage_like", "width", width)
    positive_int("montage_like", "tile", tile, minimum=2)
    positive_int("montage_like", "seed", seed, minimum=0)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap < tile:
        raise ValueError(f"montage_like: overlap must be an integer with 1 <= overlap < tile "
                         f"({tile}), got {overlap!r}")
    if not noise >= 0:
        raise ValueError(f"montage_like: noise must be >= 0, got {noise!r}")
    tiles = [project(i, tile, overlap, seed, noise) for i in range(width)]
    fits = [diff_fit((tiles[i], tiles[i + 1]), overlap) for i in range(width - 1)]
    model = bg_model(concat_fits(fits))
    step = tile - overlap
    corrected = [(i * step, background(t, model, i)) for i, t in enumerate(tiles)]
    return Workflow(add_mosaic(corrected), name="montage_like")
