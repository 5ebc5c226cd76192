"""The FaaS platform and storage being simulated, as one validated, immutable record.

:class:`Platform` holds numbers only; the models in :mod:`faasplan.simulator` turn them
into behaviour. The defaults resemble AWS Lambda with a Redis server in the same region
(figures from public documentation and commonly reported measurements, rounded):

* memory configurations 512 ... 10240 MB; Lambda gives one vCPU per 1769 MB, up to 6;
* an asynchronous invocation reaches a sandbox about 25 ms after it is sent, plus the
  time to move its payload;
* a cold start takes a few hundred ms (lognormal), a warm start a few ms; idle sandboxes
  stay warm for ten minutes;
* a Redis round trip takes about 1 ms in-region; the server's network is 10 Gbit/s;
* a function's network throughput grows with memory, from ~75 MB/s at 1 GB.

Units are in the field names: ``_mb`` is memory in MiB as Lambda counts it, ``_mb_s``
is throughput in 10**6 bytes per second, ``_ms``/``_s`` are times.

>>> p = Platform()
>>> round(p.vcpu(3538), 3), p.exec_factor(p.reference_memory_mb)
(2.0, 1.0)
>>> Platform().replace(storage_latency_ms=0.0).storage_latency_ms
0.0
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Platform:
    """A FaaS platform with a key-value store (see the module docstring for defaults).

    Parameters
    ----------
    memory_sizes_mb : tuple of int
        Memory configurations planners choose from (strictly increasing).
    default_memory_mb : int
        Memory of a worker when a plan does not say (WUKONG-style runs).
    mb_per_vcpu, min_vcpu, max_vcpu : float
        ``vcpu(m) = clamp(m / mb_per_vcpu, min_vcpu, max_vcpu)``.
    reference_memory_mb : int
        Memory at which task profiles (measured execution times) hold.
    cpu_exponent : float
        Below one vCPU a task gets a share of a core: time grows as
        ``(1 / vcpu) ** cpu_exponent``.
    multicore_exponent : float
        Above one vCPU only partly parallel code gains: time shrinks as
        ``vcpu ** -multicore_exponent`` (0: single-threaded tasks gain nothing).
    invocation_base_ms, invocation_ms_per_kib : float
        Time from sending an invocation until the platform starts (or queues) it:
        ``base + per_kib * payload KiB``.
    invoke_call_ms : float
        Time a worker is busy sending one invocation request (the client sends its
        initial invocations concurrently and is not charged).
    cold_start_ms, cold_start_memory_exponent, cold_start_sigma : float
        A cold start is lognormal with median ``cold_start_ms * (m / 1024) **
        cold_start_memory_exponent`` and log-space standard deviation ``cold_start_sigma``
        (0: always the median).
    warm_start_ms : float
        Start time of an invocation that finds an idle sandbox of its memory.
    keep_alive_s : float
        How long an idle sandbox stays warm.
    concurrency_limit : int
        Sandboxes running at once; further invocations wait in a FIFO queue.
    storage_latency_ms : float
        One round trip to the key-value store, paid by every storage operation.
    storage_bandwidth_mb_s : float
        The store's network, shared fairly by all concurrent transfers (``inf``: no limit).
    worker_bandwidth_mb_s_at_1024, worker_bandwidth_exponent, worker_bandwidth_cap_mb_s
        A worker's network: ``min(at_1024 * (m / 1024) ** exponent, cap)``, shared by the
        worker's concurrent transfers.
    client_bandwidth_mb_s : float
        The client's network, used to upload large literals and the DAG before a run.
    price_per_gb_s, price_per_request : float
        Billing in USD: memory-time (GiB-seconds) and a fee per invocation.
    billing_granularity_ms : float
        Billed duration is rounded up to a multiple of this.
    host_cores : float
        Cores of one host that runs every sandbox, shared by the executions running at
        once (processor sharing; each sandbox uses at most one core). ``inf`` (the
        default) is real FaaS: every sandbox has its own vCPUs. Set it to model the local
        emulator, whose worker processes share one machine.
    transfer_overhead_ms : float
        Time a worker spends on each upload or download besides the storage round trip
        and the bytes (the client library, framing); 0 by default.
    """

    memory_sizes_mb: tuple[int, ...] = (512, 1024, 1769, 2048, 3008, 4096, 10240)
    default_memory_mb: int = 1769
    mb_per_vcpu: float = 1769.0
    min_vcpu: float = 0.07
    max_vcpu: float = 6.0
    reference_memory_mb: int = 1769
    cpu_exponent: float = 1.0
    multicore_exponent: float = 0.1
    invocation_base_ms: float = 25.0
    invocation_ms_per_kib: float = 0.05
    invoke_call_ms: float = 2.0
    cold_start_ms: float = 250.0
    cold_start_memory_exponent: float = 0.05
    cold_start_sigma: float = 0.25
    warm_start_ms: float = 8.0
    keep_alive_s: float = 600.0
    concurrency_limit: int = 1000
    storage_latency_ms: float = 1.0
    storage_bandwidth_mb_s: float = 1250.0
    worker_bandwidth_mb_s_at_1024: float = 75.0
    worker_bandwidth_exponent: float = 0.5
    worker_bandwidth_cap_mb_s: float = 300.0
    client_bandwidth_mb_s: float = 125.0
    price_per_gb_s: float = 0.0000166667
    price_per_request: float = 0.0000002
    billing_granularity_ms: float = 1.0
    host_cores: float = math.inf
    transfer_overhead_ms: float = 0.0

    # Fields that must be > 0 (the rest of the numbers must be >= 0).
    _POSITIVE: ClassVar[frozenset[str]] = frozenset({
        "default_memory_mb", "mb_per_vcpu", "min_vcpu", "max_vcpu", "reference_memory_mb",
        "cold_start_ms", "concurrency_limit", "storage_bandwidth_mb_s",
        "worker_bandwidth_mb_s_at_1024", "worker_bandwidth_cap_mb_s", "client_bandwidth_mb_s",
        "billing_granularity_ms", "host_cores"})
    # Throughputs may be infinite (no limit); every other number must be finite.
    _MAY_BE_INFINITE: ClassVar[frozenset[str]] = frozenset({
        "storage_bandwidth_mb_s", "worker_bandwidth_mb_s_at_1024", "worker_bandwidth_cap_mb_s",
        "client_bandwidth_mb_s", "keep_alive_s", "host_cores"})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "memory_sizes_mb":
                object.__setattr__(self, f.name, _memory_sizes(value))
            elif f.type == "int":
                _check_int(f.name, value, positive=f.name in self._POSITIVE)
            else:
                object.__setattr__(self, f.name, self._check_float(f.name, value))
        if self.min_vcpu > self.max_vcpu:
            raise ValueError(f"Platform: min_vcpu ({self.min_vcpu}) must be <= max_vcpu "
                             f"({self.max_vcpu})")

    def _check_float(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"Platform.{name} must be a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and name not in self._MAY_BE_INFINITE):
            raise ValueError(f"Platform.{name} must be a finite number, got {value!r}")
        if value < 0 or (value == 0 and name in self._POSITIVE):
            bound = "> 0" if name in self._POSITIVE else ">= 0"
            raise ValueError(f"Platform.{name} must be {bound}, got {value!r}")
        return value

    # -- the rules ------------------------------------------------------------------------
    def vcpu(self, memory_mb: float) -> float:
        """vCPUs of a worker with ``memory_mb``."""
        return min(max(memory_mb / self.mb_per_vcpu, self.min_vcpu), self.max_vcpu)

    def exec_factor(self, memory_mb: float) -> float:
        """Execution time at ``memory_mb`` relative to the reference memory (1.0 there).

        Time ~ ``(1/v) ** cpu_exponent`` while ``v = vcpu(m) < 1`` (a share of one core),
        then ``v ** -multicore_exponent``.
        """
        return self._slowness(self.vcpu(memory_mb)) / self._slowness(
            self.vcpu(self.reference_memory_mb))

    def _slowness(self, v: float) -> float:
        if v < 1.0:
            return float(v ** -self.cpu_exponent)
        return float(v ** -self.multicore_exponent)

    def worker_bandwidth_mb_s(self, memory_mb: float) -> float:
        """Network throughput of a worker with ``memory_mb`` (MB/s)."""
        bw = self.worker_bandwidth_mb_s_at_1024 * (memory_mb / 1024.0) ** \
            self.worker_bandwidth_exponent
        return min(bw, self.worker_bandwidth_cap_mb_s)

    def invocation_ms(self, nbytes: int) -> float:
        """Delay of an invocation whose request is ``nbytes`` long."""
        return self.invocation_base_ms + self.invocation_ms_per_kib * nbytes / 1024.0

    def cold_start_median_ms(self, memory_mb: float) -> float:
        """Median cold start of a sandbox with ``memory_mb``."""
        return self.cold_start_ms * (memory_mb / 1024.0) ** self.cold_start_memory_exponent

    def cost_usd(self, memory_mb: float, duration_ms: float) -> float:
        """Price of one invocation billed for ``duration_ms`` at ``memory_mb``."""
        g = self.billing_granularity_ms
        billed_ms = math.ceil(max(duration_ms, 0.0) / g - 1e-9) * g
        return self.price_per_gb_s * (memory_mb / 1024.0) * billed_ms / 1000.0 + \
            self.price_per_request

    # -- copies and files -----------------------------------------------------------------
    def replace(self, **overrides: Any) -> Platform:
        """A copy with ``overrides`` applied and validated.

        Raises
        ------
        ValueError
            An override names no field (the message lists the valid ones) or a value is
            out of range.
        """
        _reject_unknown(overrides, "Platform.replace()")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain field -> value mapping (tuples become lists), readable by :meth:`from_dict`."""
        out = dataclasses.asdict(self)
        out["memory_sizes_mb"] = list(self.memory_sizes_mb)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Platform:
        """Build from a mapping of field values; missing fields keep their defaults.

        ``source`` names where the mapping came from in error messages.

        Raises
        ------
        ValueError
            An unknown key (named with ``source``) or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{source}: platform settings must be a mapping, got "
                            f"{type(data).__name__}")
        _reject_unknown(data, source)
        values = dict(data)
        if "memory_sizes_mb" in values and isinstance(values["memory_sizes_mb"], list):
            values["memory_sizes_mb"] = tuple(values["memory_sizes_mb"])
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Platform:
        """Read a TOML file of ``field = value`` lines (as written by :meth:`to_toml`)."""
        where = os.fspath(path)
        try:
            with open(where, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"platform file not found: {where}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{where}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=where)

    def to_toml(self, path: str | os.PathLike[str]) -> None:
        """Write every field as ``field = value`` to ``path``."""
        lines = ["# faasplan platform (units in the field names)"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {_toml_value(value)}")
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reject_unknown(data: Mapping[str, Any], source: str) -> None:
    valid = [f.name for f in fields(Platform)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"{source}: unknown platform field(s) {unknown}; valid fields are "
                         f"{', '.join(valid)}")


def _check_int(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Platform.{name} must be an integer, got {value!r}")
    if value < (1 if positive else 0):
        raise ValueError(f"Platform.{name} must be {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")


def _memory_sizes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not value:
        raise ValueError(f"Platform.memory_sizes_mb must be a non-empty sequence of MB, "
                         f"got {value!r}")
    for m in value:
        _check_int("memory_sizes_mb", m, positive=True)
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"Platform.memory_sizes_mb must be strictly increasing, got {value!r}")
    return tuple(value)


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return repr(value)
    return str(value)
