"""Image pipeline: per image generate, blur, detect edges, downsample; one stats fan-in."""

from __future__ import annotations

import numpy as np

from faasplan.workflow import Workflow, io, task
from faasplan.workloads._checks import positive_int


# Output size follows the size parameter, not input bytes: no hint.
@task
def generate(seed: int, index: int, size: int) -> np.ndarray:
    """Image ``index``: ``size`` x ``size`` uniform noise in [0, 1), seeded ``[seed, index]``."""
    return np.random.default_rng([seed, index]).random((size, size))


def _padded(image: np.ndarray) -> np.ndarray:
    # Edge replication keeps borders from darkening.
    return np.pad(image, 1, mode="edge")


@task(io=io.linear(1.0))
def blur(image: np.ndarray) -> np.ndarray:
    """3 x 3 box blur, borders replicated."""
    p = _padded(image)
    h, w = image.shape
    total = sum(p[dr:dr + h, dc:dc + w] for dr in range(3) for dc in range(3))
    return np.asarray(total) / 9.0


@task(io=io.linear(1.0))
def edges(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude, borders replicated."""
    p = _padded(image)
    h, w = image.shape

    def win(dr: int, dc: int) -> np.ndarray:
        return p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    gx = (win(-1, 1) + 2 * win(0, 1) + win(1, 1)) - (win(-1, -1) + 2 * win(0, -1) + win(1, -1))
    gy = (win(1, -1) + 2 * win(1, 0) + win(1, 1)) - (win(-1, -1) + 2 * win(-1, 0) + win(-1, 1))
    return np.hypot(gx, gy)


@task(io=io.linear(0.25))
def downsample(image: np.ndarray) -> np.ndarray:
    """Half resolution: the mean of each 2 x 2 block."""
    h, w = image.shape
    return image.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


@task(io=io.constant(32))
def stats(images: list[np.ndarray]) -> np.ndarray:
    """``[mean, std, min, max]`` over all pixels of all images (4 float64: 32 bytes)."""
    pixels = np.concatenate([im.ravel() for im in images])
    return np.array([pixels.mean(), pixels.std(), pixels.min(), pixels.max()])


def image_pipeline(images: int = 4, size: int = 128, seed: int = 0) -> Workflow:
    """``images`` chains generate -> blur -> edges -> downsample and one ``stats`` fan-in.

    ``4 * images + 1`` tasks; deterministic for a ``seed``. The sink returns
    ``[mean, std, min, max]`` of the downsampled edge maps.

    Parameters
    ----------
    images : int
        Number of images, >= 1.
    size : int
        Image side in pixels, even and >= 2.
    seed : int
        Seed of the image generators, >= 0.

    >>> len(image_pipeline(images=3, size=16))
    13
    """
    positive_int("image_pipeline", "images", images)
    positive_int("image_pipeline", "size", size, minimum=2)
    positive_int("image_pipeline", "seed", seed, minimum=0)
    if size % 2:
        raise ValueError(f"image_pipeline: size must be even to downsample by 2, got {size}")
    small = [downsample(edges(blur(generate(seed, i, size)))) for i in range(images)]
    return Workflow(stats(small), name="image_pipeline")
