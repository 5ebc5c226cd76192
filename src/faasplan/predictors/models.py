"""The prediction models: their parameters, defaults and plain-float evaluation.

Memory enters every model relative to :data:`REFERENCE_MEMORY_MB` (1024 MB), so a
coefficient reads as "at 1 GB". Each model carries the :class:`~faasplan.predictors.sla.
Empirical` distribution of its multiplicative residuals (observed / fitted); a prediction at
an SLA is the point value times that distribution's mean (``"average"``) or percentile.
Models fitted on no data (``source="default"`` or ``"hint"``) have a residual distribution
concentrated at 1, so every SLA gives the point value.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from faasplan.predictors.sla import Empirical
from faasplan.workflow.io import IOHint

Source = Literal["fitted", "hint", "default"]
StartState = Literal["cold", "warm"]
OutputKind = Literal["linear", "power", "constant"]

REFERENCE_MEMORY_MB = 1024.0
MB = 1_000_000.0
#: Floor for times before taking logs; a 0 ms observation is a timer artefact.
MIN_MS = 1e-3

#: Fewer samples than this and a model falls back to the io hint, then to :class:`Defaults`.
MIN_SAMPLES = 3

_UNIT = Empirical.constant(1.0)


@dataclass(frozen=True, slots=True)
class Defaults:
    """What predictions use for a model with fewer samples than the fit minimum.

    Sizes use 1 MB = 10**6 bytes. Memory scaling is relative to 1024 MB.

    Attributes
    ----------
    exec_ms_per_mb, exec_size_exponent, exec_memory_exponent, exec_constant_ms
        Execution time ``exec_constant_ms + exec_ms_per_mb * (input MB) ** size_exponent *
        (memory / 1024 MB) ** -memory_exponent``: 100 ms per MB at 1 GB, linear in size,
        plus 1 ms so an input-less task is not free. The memory exponent is also used when
        the data hold a single memory size and the exponent cannot be fitted.
    output_ratio
        Output size = ``output_ratio`` * input size.
    transfer_latency_ms, transfer_bandwidth_mb_s, transfer_memory_exponent
        Transfer time ``latency + bytes / (bandwidth * (memory / 1024 MB) ** exponent)``;
        1 ms + 100 MB/s at 1 GB, bandwidth growing with memory ** 0.3.
    cold_start_ms, warm_start_ms, startup_memory_exponent
        Start-up times at 1 GB, scaled by ``(memory / 1024 MB) ** startup_memory_exponent``.
    """

    exec_ms_per_mb: float = 100.0
    exec_size_exponent: float = 1.0
    exec_memory_exponent: float = 0.5
    exec_constant_ms: float = 1.0
    output_ratio: float = 1.0
    transfer_latency_ms: float = 1.0
    transfer_bandwidth_mb_s: float = 100.0
    transfer_memory_exponent: float = 0.3
    cold_start_ms: float = 250.0
    warm_start_ms: float = 5.0
    startup_memory_exponent: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value):
                raise ValueError(f"Defaults.{f.name} must be finite, got {value!r}")
            if not f.name.endswith("exponent") and value < 0:
                raise ValueError(f"Defaults.{f.name} must be >= 0, got {value!r}")
        if self.transfer_bandwidth_mb_s <= 0:
            raise ValueError("Defaults.transfer_bandwidth_mb_s must be > 0, got "
                             f"{self.transfer_bandwidth_mb_s!r}")


DEFAULTS = Defaults()


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted value with the number of samples it rests on and where it came from.

    ``source`` is ``"fitted"`` (learnt from ``samples`` observations), ``"hint"`` (the
    task's io hint, 0 samples) or ``"default"`` (:class:`Defaults`, 0 samples).
    """

    value: float
    samples: int
    source: Source


@dataclass(frozen=True, slots=True, eq=False)
class ExecModel:
    """Execution time of one function.

    ``exec_ms = constant_ms + coefficient * max(input_bytes, 1) ** size_exponent *
    (memory_mb / 1024) ** -memory_exponent``. A positive ``memory_exponent`` means more
    memory runs faster. ``*_fitted`` say which exponents came from data (an exponent the
    data cannot identify, e.g. a single memory size, keeps its default; a single input size
    gives ``size_exponent = 0``).
    """

    coefficient: float
    size_exponent: float
    memory_exponent: float
    constant_ms: float = 0.0
    residuals: Empirical = _UNIT
    samples: int = 0
    source: Source = "default"
    size_exponent_fitted: bool = False
    memory_exponent_fitted: bool = False
    max_input_bytes: float = math.inf

    @classmethod
    def from_defaults(cls, defaults: Defaults = DEFAULTS) -> ExecModel:
        """The model :class:`Defaults` describe (0 samples, source ``"default"``)."""
        coefficient = defaults.exec_ms_per_mb / MB ** defaults.exec_size_exponent
        return cls(coefficient, defaults.exec_size_exponent, defaults.exec_memory_exponent,
                   defaults.exec_constant_ms)

    def point_ms(self, input_bytes: float, memory_mb: float) -> float:
        """The fitted curve itself, without residual scaling."""
        x = input_bytes if input_bytes > 1.0 else 1.0
        return self.constant_ms + self.coefficient * _grow(x, self.size_exponent,
                                                           self.max_input_bytes) * (
            memory_mb / REFERENCE_MEMORY_MB) ** -self.memory_exponent

    def predict(self, input_bytes: float, memory_mb: float, sla: str = "average") -> float:
        """Execution time in ms at the SLA level."""
        return self.point_ms(input_bytes, memory_mb) * self.residuals.at(sla)


@dataclass(frozen=True, slots=True, eq=False)
class OutputModel:
    """Output size of one function: ``coefficient * input_bytes ** exponent``.

    ``kind`` is the form: ``linear`` (exponent 1, coefficient = ratio), ``power`` or
    ``constant`` (exponent 0, coefficient = bytes).
    """

    kind: OutputKind
    coefficient: float
    exponent: float
    residuals: Empirical = _UNIT
    samples: int = 0
    source: Source = "default"
    max_input_bytes: float = math.inf

    @classmethod
    def from_defaults(cls, defaults: Defaults = DEFAULTS) -> OutputModel:
        """Output = ``defaults.output_ratio`` * input (0 samples, source ``"default"``)."""
        return cls("linear", defaults.output_ratio, 1.0)

    @classmethod
    def from_hint(cls, hint: IOHint) -> OutputModel:
        """The hint taken as it is (0 samples, source ``"hint"``)."""
        if hint.kind == "constant":
            return cls("constant", float(hint.nbytes), 0.0, source="hint")
        if hint.kind == "linear":
            ratio = 1.0 if hint.ratio is None else hint.ratio
            return cls("linear", ratio, 1.0, source="hint")
        return cls("power", hint.coefficient, hint.exponent, source="hint")

    def point_bytes(self, input_bytes: float) -> float:
        """The fitted curve itself, without residual scaling."""
        # 0.0 ** 0.0 is 1.0, so a constant model ignores a zero input as it should.
        return self.coefficient * _grow(float(input_bytes), self.exponent, self.max_input_bytes)

    def predict(self, input_bytes: float, sla: str = "average") -> float:
        """Output size in bytes at the SLA level."""
        return self.point_bytes(input_bytes) * self.residuals.at(sla)


@dataclass(frozen=True, slots=True, eq=False)
class TransferModel:
    """Transfer time in one direction, pooled over functions.

    ``ms = latency_ms + nbytes / (bandwidth * (memory_mb / 1024) ** memory_exponent)`` with
    ``bandwidth`` in bytes per ms at 1 GB (:attr:`bandwidth_mb_s` gives MB/s).
    """

    latency_ms: float
    bandwidth: float
    memory_exponent: float
    residuals: Empirical = _UNIT
    samples: int = 0
    source: Source = "default"
    latency_fitted: bool = False
    memory_exponent_fitted: bool = False

    @classmethod
    def from_defaults(cls, defaults: Defaults = DEFAULTS) -> TransferModel:
        """The transfer model :class:`Defaults` describe."""
        return cls(defaults.transfer_latency_ms, defaults.transfer_bandwidth_mb_s * MB / 1000.0,
                   defaults.transfer_memory_exponent)

    @property
    def bandwidth_mb_s(self) -> float:
        """Bandwidth at 1 GB in MB/s."""
        return self.bandwidth * 1000.0 / MB

    def point_ms(self, nbytes: float, memory_mb: float) -> float:
        """The fitted curve itself, without residual scaling."""
        return self.latency_ms + nbytes / (
            self.bandwidth * (memory_mb / REFERENCE_MEMORY_MB) ** self.memory_exponent)

    def predict(self, nbytes: float, memory_mb: float, sla: str = "average") -> float:
        """Transfer time in ms at the SLA level."""
        return self.point_ms(nbytes, memory_mb) * self.residuals.at(sla)


@dataclass(frozen=True, slots=True, eq=False)
class StartupModel:
    """Cold or warm start-up time as a function of memory.

    A memory size with enough samples (an *anchor*) is predicted from its own empirical
    distribution. Other sizes follow the power law ``scale_ms * (memory / 1024) **
    memory_exponent`` fitted over all samples, corrected by the anchors: between two
    anchors the correction is interpolated in log-memory (which amounts to a straight line
    between the neighbours on log-log axes), beyond the outermost anchor it is held, so the
    fitted exponent sets the slope. With no anchor the power law times the pooled residual
    distribution is used.
    """

    state: StartState
    scale_ms: float
    memory_exponent: float
    residuals: Empirical = _UNIT
    anchors: Mapping[float, Empirical] = field(default_factory=dict)
    samples: int = 0
    source: Source = "default"
    memory_exponent_fitted: bool = False
    _memories: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_memories", tuple(sorted(self.anchors)))

    @classmethod
    def from_defaults(cls, state: StartState, defaults: Defaults = DEFAULTS) -> StartupModel:
        """The start-up model :class:`Defaults` describe for ``state``."""
        scale = defaults.cold_start_ms if state == "cold" else defaults.warm_start_ms
        return cls(state, scale, defaults.startup_memory_exponent)

    def power_ms(self, memory_mb: float) -> float:
        """The fitted power law alone."""
        return self.scale_ms * (memory_mb / REFERENCE_MEMORY_MB) ** self.memory_exponent

    def samples_at(self, memory_mb: float) -> int:
        """Samples behind a prediction at ``memory_mb`` (all samples unless it is an anchor)."""
        dist = self.anchors.get(memory_mb)
        return len(dist) if dist is not None else self.samples

    def predict(self, memory_mb: float, sla: str = "average") -> float:
        """Start-up time in ms at the SLA level."""
        dist = self.anchors.get(memory_mb)
        if dist is not None:
            return dist.at(sla)
        memories = self._memories
        if not memories:
            return self.power_ms(memory_mb) * self.residuals.at(sla)
        i = bisect_left(memories, memory_mb)
        if i == 0 or i == len(memories):
            edge = memories[0] if i == 0 else memories[-1]
            return self.anchors[edge].at(sla) * (memory_mb / edge) ** self.memory_exponent
        low, high = memories[i - 1], memories[i]
        v_low = max(self.anchors[low].at(sla), MIN_MS)
        v_high = max(self.anchors[high].at(sla), MIN_MS)
        t = math.log(memory_mb / low) / math.log(high / low)
        return v_low * (v_high / v_low) ** t


def _grow(x: float, exponent: float, x_max: float) -> float:
    """``x ** exponent``, but no faster than linear beyond the largest input seen.

    A super-linear exponent fitted on a range of inputs must not be extrapolated far
    beyond it: chained through a DAG (outputs feeding inputs) it would explode.
    """
    if x <= x_max or exponent <= 1.0:
        return float(x ** exponent)
    return float(x_max ** exponent * (x / x_max))
