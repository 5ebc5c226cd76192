"""I/O hints: how a task's output size follows its input size.

A hint is declared with ``@task(io=io.linear())`` and read by the predictors as the form
of the output-size model, and by the simulator as the ground truth when nothing better is
known.

>>> from faasplan.workflow import io
>>> io.linear(0.5).output_bytes(1000)
500.0
>>> io.power(2.0).output_bytes(10)
100.0
>>> io.constant(64).output_bytes(10**9)
64.0
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

Kind = Literal["linear", "power", "constant"]


@dataclass(frozen=True, slots=True)
class IOHint:
    """A declared input->output size relationship.

    ``linear``: ``out = ratio * in`` (``ratio=None`` means "linear, ratio to be fitted",
    predicted as 1.0 until data exists); ``power``: ``out = coefficient * in ** exponent``;
    ``constant``: ``out = nbytes`` whatever the input.
    """

    kind: Kind
    ratio: float | None = None
    exponent: float = 1.0
    coefficient: float = 1.0
    nbytes: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "power", "constant"):
            raise ValueError(f"unknown io hint kind {self.kind!r}; use linear, power or constant")
        for name in ("ratio", "exponent", "coefficient", "nbytes"):
            value = getattr(self, name)
            if value is None and name == "ratio":
                continue
            # bool is a Real too, but io.linear(True) is a slip, not a ratio.
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"io hint {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"io hint {name} must be a finite number >= 0, got {value!r}")

    def output_bytes(self, input_bytes: float) -> float:
        """Output size this hint predicts for ``input_bytes`` of input."""
        if self.kind == "constant":
            return float(self.nbytes)
        if self.kind == "linear":
            return (1.0 if self.ratio is None else self.ratio) * input_bytes
        return self.coefficient * float(input_bytes) ** self.exponent


def linear(ratio: float | None = None) -> IOHint:
    """Output size proportional to input size (``ratio=None``: the ratio is fitted)."""
    return IOHint("linear", ratio=ratio)


def power(exponent: float, coefficient: float = 1.0) -> IOHint:
    """Output size ``coefficient * input_bytes ** exponent``."""
    return IOHint("power", exponent=exponent, coefficient=coefficient)


def constant(nbytes: float) -> IOHint:
    """Output size independent of the input: always ``nbytes``."""
    return IOHint("constant", nbytes=nbytes)
