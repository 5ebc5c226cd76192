"""The predecessor system's predictor, kept as the reference accuracy reports compare with.

Its rules, reproduced as they were (the constants below):

* execution time = ms per input byte, averaged over the samples nearest in input size (a
  window of +-5 % of the input size, widened in 5 % steps until it holds at least 5
  samples) x input bytes x (512 MB / memory) ** 0.3;
* output size = input bytes x the mean output/input ratio;
* transfer time = bytes / mean bytes-per-ms of the samples, the bandwidth scaled by
  (memory / 512 MB) ** 0.3;
* time models use only the samples of the exact memory size when at least 6 exist;
  otherwise all samples, each first scaled to 512 MB with the same 0.3 rule.

Where the old rules are undefined this module decides: an input of 0 bytes counts as 1
byte for execution time; samples with zero input (output ratio) or zero bytes or time
(bandwidth) are skipped; with no usable sample at all the :class:`Defaults` are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from faasplan.predictors.metrics import Direction, explode_transfers
from faasplan.predictors.models import DEFAULTS, Defaults, ExecModel, TransferModel

BASELINE_MEMORY_MB = 512.0
BASELINE_MEMORY_EXPONENT = 0.3
WINDOW_STEP = 0.05
WINDOW_MIN_SAMPLES = 5
EXACT_MEMORY_MIN_SAMPLES = 6

Samples = tuple[np.ndarray, np.ndarray, np.ndarray]


class BaselinePredictor:
    """The predecessor's predictor, fitted on a metrics frame (see the module docs)."""

    __slots__ = ("_defaults", "_exec", "_ratio", "_transfer")

    def __init__(self, exec_samples: Mapping[str, Samples], output_ratios: Mapping[str, float],
                 transfer_samples: Mapping[str, Samples], defaults: Defaults = DEFAULTS) -> None:
        self._exec = dict(exec_samples)
        self._ratio = dict(output_ratios)
        self._transfer = dict(transfer_samples)
        self._defaults = defaults

    @classmethod
    def fit(cls, df: pd.DataFrame, defaults: Defaults = DEFAULTS) -> BaselinePredictor:
        """Collect the samples the old rules average over (``df`` is a validated frame)."""
        exec_samples: dict[str, Samples] = {}
        ratios: dict[str, float] = {}
        for function, rows in df.groupby("function", sort=True).indices.items():
            part = df.iloc[rows]
            x = part["input_bytes"].to_numpy(dtype=float)
            exec_samples[str(function)] = (np.maximum(x, 1.0),
                                           part["memory_mb"].to_numpy(dtype=float),
                                           part["exec_ms"].to_numpy(dtype=float))
            usable = x > 0
            if usable.any():
                out = part["output_bytes"].to_numpy(dtype=float)
                ratios[str(function)] = float(np.mean(out[usable] / x[usable]))
        transfers = explode_transfers(df) if len(df) else None
        transfer_samples: dict[str, Samples] = {}
        for direction in ("download", "upload"):
            if transfers is None:
                continue
            t = transfers[(transfers["direction"] == direction) & ~transfers["streamed"]
                          & (transfers["nbytes"] > 0) & (transfers["ms"] > 0)]
            if len(t):
                transfer_samples[direction] = (t["nbytes"].to_numpy(dtype=float),
                                               t["memory_mb"].to_numpy(dtype=float),
                                               t["ms"].to_numpy(dtype=float))
        return cls(exec_samples, ratios, transfer_samples, defaults)

    def execution_ms(self, function: str, input_bytes: float, memory_mb: float) -> float:
        """Execution time in ms by the old nearest-size, fixed-exponent rule."""
        target = max(float(input_bytes), 1.0)
        if function not in self._exec:
            return ExecModel.from_defaults(self._defaults).point_ms(target, memory_mb)
        x, m, y = self._exec[function]
        exact = m == memory_mb
        if np.count_nonzero(exact) >= EXACT_MEMORY_MIN_SAMPLES:
            x, rate, scale = x[exact], y[exact] / x[exact], 1.0
        else:
            rate = y / x * (m / BASELINE_MEMORY_MB) ** BASELINE_MEMORY_EXPONENT
            scale = (BASELINE_MEMORY_MB / memory_mb) ** BASELINE_MEMORY_EXPONENT
        return float(np.mean(rate[_window(x, target)])) * target * scale

    def output_bytes(self, function: str, input_bytes: float) -> float:
        """Output size: input bytes x the mean output/input ratio."""
        return float(input_bytes) * self._ratio.get(function, self._defaults.output_ratio)

    def transfer_ms(self, nbytes: float, memory_mb: float, direction: Direction) -> float:
        """Transfer time: bytes / mean bandwidth, the bandwidth scaled by memory ** 0.3."""
        if direction not in ("download", "upload"):
            raise ValueError(f"unknown transfer direction {direction!r}; use 'download' or "
                             "'upload'")
        if direction not in self._transfer:
            return TransferModel.from_defaults(self._defaults).point_ms(nbytes, memory_mb)
        n, m, ms = self._transfer[direction]
        exact = m == memory_mb
        if np.count_nonzero(exact) >= EXACT_MEMORY_MIN_SAMPLES:
            bandwidth = float(np.mean(n[exact] / ms[exact]))
        else:
            at_base = n / ms / (m / BASELINE_MEMORY_MB) ** BASELINE_MEMORY_EXPONENT
            bandwidth = float(np.mean(at_base)) * (
                memory_mb / BASELINE_MEMORY_MB) ** BASELINE_MEMORY_EXPONENT
        return float(nbytes) / bandwidth


def _window(sizes: np.ndarray, target: float) -> np.ndarray:
    """Samples within the smallest ``k * 5 %`` of ``target`` holding at least 5 of them.

    Equivalent to widening the window step by step, computed directly: the window is the
    relative distance of the 5th nearest sample rounded up to a whole step.
    """
    if len(sizes) <= WINDOW_MIN_SAMPLES:
        return np.ones(len(sizes), dtype=bool)
    distance = np.abs(sizes - target) / target
    fifth = float(np.partition(distance, WINDOW_MIN_SAMPLES - 1)[WINDOW_MIN_SAMPLES - 1])
    steps = max(1, math.ceil(fifth / WINDOW_STEP - 1e-9))
    return np.asarray(distance <= steps * WINDOW_STEP + 1e-12)
