"""SLA levels and the empirical distributions they are read from.

An SLA is ``"average"`` (the mean) or ``"pNN"``, a percentile such as ``"p50"``, ``"p90"``,
``"p99"`` or ``"p99.9"``. Models keep an :class:`Empirical` distribution (of residual
ratios, or of start-up times) and read the SLA level from it with plain float arithmetic,
because planners query predictions in their inner loops.

>>> parse_sla("p90")
0.9
>>> parse_sla("average") is None
True
>>> Empirical.of([1.0, 2.0, 3.0, 4.0]).at("p50")
2.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

STANDARD_SLAS: tuple[str, ...] = ("average", "p50", "p90", "p95", "p99")
SLA_FORMS = "'average', or 'pNN' with 0 < NN < 100 (e.g. 'p50', 'p90', 'p95', 'p99', 'p99.9')"


def parse_sla(sla: str) -> float | None:
    """The quantile an SLA string asks for: None for ``"average"``, ``q`` in (0, 1) for pNN.

    Raises
    ------
    ValueError
        For anything else; the message lists the valid forms.
    """
    if sla == "average":
        return None
    if isinstance(sla, str) and sla[:1] == "p" and sla[1:2].isdigit():
        try:
            percent = float(sla[1:])
        except ValueError:
            percent = math.nan
        if 0.0 < percent < 100.0:
            return percent / 100.0
    raise ValueError(f"unknown sla {sla!r}; use {SLA_FORMS}")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Empirical:
    """A sorted sample with its mean; ``at(sla)`` reads the mean or a quantile.

    Quantiles interpolate linearly between order statistics (NumPy's default method).
    The standard SLA levels are precomputed so the common queries are one dict lookup.
    """

    values: tuple[float, ...]
    mean: float
    _table: Mapping[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, values: Iterable[float]) -> Empirical:
        """The empirical distribution of ``values`` (at least one finite value)."""
        array = np.sort(np.fromiter(values, dtype=float))
        if not len(array) or not np.isfinite(array).all():
            raise ValueError(f"an empirical distribution needs finite values, got {array!r}")
        ordered = tuple(array.tolist())
        mean = math.fsum(ordered) / len(ordered)
        table = {"average": mean}
        for sla in STANDARD_SLAS[1:]:
            table[sla] = _quantile(ordered, float(sla[1:]) / 100.0)
        return cls(ordered, mean, table)

    @classmethod
    def constant(cls, value: float = 1.0) -> Empirical:
        """A distribution with all its mass at ``value`` (every SLA reads ``value``)."""
        return cls.of([value])

    def __repr__(self) -> str:
        return f"Empirical(n={len(self.values)}, mean={self.mean:.6g}, p90={self.at('p90'):.6g})"

    def __len__(self) -> int:
        return len(self.values)

    def at(self, sla: str) -> float:
        """The mean (``"average"``) or the requested percentile (``"pNN"``)."""
        value = self._table.get(sla)
        if value is not None:
            return value
        q = parse_sla(sla)
        return self.mean if q is None else _quantile(self.values, q)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile, ``0 <= q <= 1``."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q!r}")
        return _quantile(self.values, q)


def _quantile(ordered: tuple[float, ...], q: float) -> float:
    position = q * (len(ordered) - 1)
    below = int(position)
    if below + 1 >= len(ordered):
        return ordered[-1]
    frac = position - below
    return ordered[below] + (ordered[below + 1] - ordered[below]) * frac
