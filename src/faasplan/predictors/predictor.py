"""The :class:`Predictor`: fitted models behind a fast query interface.

Every query is a dictionary lookup plus a few float operations, since planners ask for
thousands of predictions per plan. Each ``predict_*`` method also says how many samples
the answer rests on and whether it came from data, an io hint or the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import pandas as pd

from faasplan.predictors.hierarchy import ExecDistribution, Hierarchy
from faasplan.predictors.metrics import Direction
from faasplan.predictors.models import (
    DEFAULTS,
    MIN_SAMPLES,
    Defaults,
    ExecModel,
    OutputModel,
    Prediction,
    StartState,
    StartupModel,
    TransferModel,
)
from faasplan.predictors.sla import Empirical
from faasplan.workflow.io import IOHint

ModelName = Literal["exec", "output", "download", "upload", "cold", "warm"]
MODEL_NAMES: tuple[str, ...] = ("exec", "output", "download", "upload", "cold", "warm")


class Predictor:
    """Predictions of execution time, output size, transfer time and start-up time.

    Build one with :func:`faasplan.predictors.fit` or :meth:`Predictor.empty`; it is
    immutable. Functions, directions and start states without a fitted model fall back to
    the io hint (output size only) and then to :class:`Defaults`.

    ``sla`` is ``"average"`` or a percentile ``"pNN"`` (see :func:`parse_sla`).
    """

    __slots__ = ("_default_exec", "_default_output", "_defaults", "_exec", "_hierarchy",
                 "_hints", "_min_samples", "_output", "_startup", "_transfer")

    def __init__(self, *, exec_models: Mapping[str, ExecModel] | None = None,
                 output_models: Mapping[str, OutputModel] | None = None,
                 transfer_models: Mapping[str, TransferModel] | None = None,
                 startup_models: Mapping[str, StartupModel] | None = None,
                 hints: Mapping[str, IOHint] | None = None,
                 defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES,
                 hierarchy: Hierarchy | None = None) -> None:
        self._defaults = defaults
        self._hierarchy = hierarchy
        self._default_exec = ExecModel.from_defaults(defaults)
        self._default_output = OutputModel.from_defaults(defaults)
        self._min_samples = min_samples
        # Plain dicts, never handed out: the predictor stays immutable and picklable
        # (planners ship it to worker processes).
        self._hints = dict(hints or {})
        self._exec = dict(exec_models or {})
        outputs = {f: OutputModel.from_hint(h) for f, h in self._hints.items()}
        outputs.update(output_models or {})
        self._output = outputs
        transfers = {d: TransferModel.from_defaults(defaults) for d in ("download", "upload")}
        transfers.update(transfer_models or {})
        self._transfer = transfers
        startups: dict[str, StartupModel] = {
            "cold": StartupModel.from_defaults("cold", defaults),
            "warm": StartupModel.from_defaults("warm", defaults),
        }
        startups.update(startup_models or {})
        self._startup = startups

    @classmethod
    def empty(cls, hints: Mapping[str, IOHint] | None = None, *,
              defaults: Defaults = DEFAULTS) -> Predictor:
        """A predictor without history: io hints where given, :class:`Defaults` elsewhere."""
        return cls(hints=hints, defaults=defaults)

    # -- introspection ----------------------------------------------------------------

    @property
    def defaults(self) -> Defaults:
        """The fallback values."""
        return self._defaults

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The task- and function-level models (None when fitted without a platform)."""
        return self._hierarchy

    @property
    def min_samples(self) -> int:
        """Fewest samples a model was fitted on."""
        return self._min_samples

    @property
    def hints(self) -> Mapping[str, IOHint]:
        """The io hints given at fit time, by function (read-only view)."""
        return MappingProxyType(self._hints)

    @property
    def functions(self) -> tuple[str, ...]:
        """Functions with a fitted execution-time or output-size model, sorted."""
        fitted = {f for f, m in self._output.items() if m.source == "fitted"}
        if self._hierarchy is not None:
            fitted |= set(self._hierarchy.functions)
        return tuple(sorted(fitted | set(self._exec)))

    def exec_model(self, function: str) -> ExecModel:
        """The execution-time model used for ``function`` (the default one if unfitted)."""
        model = self._exec.get(function)
        return model if model is not None else self._default_exec

    def output_model(self, function: str, hint: IOHint | None = None) -> OutputModel:
        """The output-size model used for ``function``.

        The fitted model when there is one; otherwise ``hint``, then the fit-time hint,
        then the default ratio.
        """
        model = self._output.get(function)
        if model is not None and model.source == "fitted":
            return model
        if hint is not None:
            return OutputModel.from_hint(hint)
        return model if model is not None else self._default_output

    def transfer_model(self, direction: Direction) -> TransferModel:
        """The transfer model of ``"download"`` or ``"upload"``."""
        try:
            return self._transfer[direction]
        except KeyError:
            raise ValueError(
                f"unknown transfer direction {direction!r}; use 'download' or 'upload'"
            ) from None

    def startup_model(self, state: StartState) -> StartupModel:
        """The start-up model of ``"cold"`` or ``"warm"`` starts."""
        try:
            return self._startup[state]
        except KeyError:
            raise ValueError(f"unknown start state {state!r}; use 'cold' or 'warm' (a task "
                             "continued on a running worker has no start-up)") from None

    def samples(self, function: str | None, model: ModelName) -> int:
        """How many samples the predictions of ``model`` rest on (0 for hints/defaults).

        ``function`` matters for ``"exec"`` and ``"output"``; transfers and start-ups are
        pooled over functions (pass None). For start-ups this is the total over memory
        sizes; :meth:`predict_startup` gives the count behind one memory size.
        """
        if model == "exec":
            return self.exec_model(self._need_function(function)).samples
        if model == "output":
            return self.output_model(self._need_function(function)).samples
        if model in ("download", "upload"):
            return self.transfer_model(model).samples
        if model in ("cold", "warm"):
            return self.startup_model(model).samples
        raise ValueError(f"unknown model {model!r}; use one of {list(MODEL_NAMES)}")

    @staticmethod
    def _need_function(function: str | None) -> str:
        if function is None:
            raise ValueError("exec and output models are per function: pass a function name")
        return function

    def summary(self) -> pd.DataFrame:
        """The fitted parameters, one row per model (for reports and notebooks)."""
        rows: list[dict[str, object]] = []
        for function in self.functions:
            ex = self.exec_model(function)
            rows.append({"model": "exec", "function": function, "samples": ex.samples,
                         "source": ex.source, "coefficient": ex.coefficient,
                         "size_exponent": ex.size_exponent,
                         "memory_exponent": ex.memory_exponent, "constant": ex.constant_ms,
                         "p90_factor": ex.residuals.at("p90")})
            out = self.output_model(function)
            rows.append({"model": "output", "function": function, "samples": out.samples,
                         "source": out.source, "kind": out.kind,
                         "coefficient": out.coefficient, "size_exponent": out.exponent,
                         "p90_factor": out.residuals.at("p90")})
        for direction, tr in self._transfer.items():
            rows.append({"model": direction, "samples": tr.samples, "source": tr.source,
                         "constant": tr.latency_ms, "bandwidth_mb_s": tr.bandwidth_mb_s,
                         "memory_exponent": tr.memory_exponent,
                         "p90_factor": tr.residuals.at("p90")})
        for state, st in self._startup.items():
            rows.append({"model": state, "samples": st.samples, "source": st.source,
                         "coefficient": st.scale_ms, "memory_exponent": st.memory_exponent,
                         "p90_factor": st.residuals.at("p90")})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"Predictor(functions={len(self.functions)}, "
                f"downloads={self._transfer['download'].samples}, "
                f"uploads={self._transfer['upload'].samples}, "
                f"cold={self._startup['cold'].samples}, warm={self._startup['warm'].samples})")

    # -- fast queries ------------------------------------------------------------------

    def execution_ms(self, function: str, input_bytes: float, memory_mb: float,
                     sla: str = "average") -> float:
        """Execution time in ms of ``function`` on ``input_bytes`` with ``memory_mb``."""
        if input_bytes < 0 or memory_mb <= 0:
            raise ValueError(f"execution_ms({function!r}): need input_bytes >= 0 and "
                             f"memory_mb > 0, got {input_bytes!r} and {memory_mb!r}")
        if self._hierarchy is not None:
            dist = self._hierarchy.function_exec(function, input_bytes, memory_mb)
            if dist is not None:
                return dist.at(sla)
        model = self._exec.get(function, self._default_exec)
        return model.predict(input_bytes, memory_mb, sla)

    def exec_distribution(self, function: str, input_bytes: float, memory_mb: float,
                          workflow_hash: str | None = None, task_id: str | None = None
                          ) -> ExecDistribution:
        """The distribution of a task's execution time, from the most specific level.

        With ``workflow_hash`` and ``task_id`` of a task seen in the history, its own
        history (shrunk toward its function); else the function's cross-validated model;
        else the io-hint/default model with no spread. ``source`` says which.
        """
        if input_bytes < 0 or memory_mb <= 0:
            raise ValueError(f"exec_distribution({function!r}): need input_bytes >= 0 and "
                             f"memory_mb > 0, got {input_bytes!r} and {memory_mb!r}")
        if self._hierarchy is not None:
            if workflow_hash is not None and task_id is not None:
                dist = self._hierarchy.task_exec(workflow_hash, task_id, function,
                                                 input_bytes, memory_mb)
            else:
                dist = self._hierarchy.function_exec(function, input_bytes, memory_mb)
            if dist is not None:
                return dist
        model = self._exec.get(function, self._default_exec)
        median = model.point_ms(input_bytes, memory_mb)
        return ExecDistribution(median * model.residuals.quantile(0.5),
                                _ratio_about_median(model.residuals), model.samples,
                                model.source)

    @property
    def run_effects(self) -> Empirical:
        """Whole-run speed factors of the history (the unit distribution without a
        hierarchy or with fewer than three runs); see :class:`Hierarchy`."""
        if self._hierarchy is None:
            return Empirical.constant(1.0)
        return self._hierarchy.run_effects

    def function_effect(self, function: str) -> Empirical:
        """The factor shared by ``function``'s tasks within one run, on top of the run
        effect (the unit distribution when the history cannot tell)."""
        if self._hierarchy is None:
            return Empirical.constant(1.0)
        return self._hierarchy.function_effects.get(function, Empirical.constant(1.0))

    def task_output_bytes(self, workflow_hash: str, task_id: str) -> float | None:
        """The median output size recorded for a task seen before (None if unseen)."""
        if self._hierarchy is None:
            return None
        own = self._hierarchy.tasks.get((workflow_hash, task_id))
        return None if own is None else own.output_bytes

    def output_bytes(self, function: str, input_bytes: float, sla: str = "average",
                     hint: IOHint | None = None) -> float:
        """Output size in bytes of ``function`` given ``input_bytes`` of input.

        ``hint`` is used when ``function`` has no fitted model (it takes precedence over
        the fit-time hint); data, once there is enough of it, win over any hint.
        """
        if input_bytes < 0:
            raise ValueError(f"output_bytes({function!r}): input_bytes must be >= 0, "
                             f"got {input_bytes!r}")
        return self.output_model(function, hint).predict(input_bytes, sla)

    def transfer_ms(self, nbytes: float, memory_mb: float, direction: Direction,
                    sla: str = "average") -> float:
        """Time in ms to download or upload ``nbytes`` from a worker with ``memory_mb``."""
        if nbytes < 0 or memory_mb <= 0:
            raise ValueError(f"transfer_ms: need nbytes >= 0 and memory_mb > 0, got "
                             f"{nbytes!r} and {memory_mb!r}")
        return self.transfer_model(direction).predict(nbytes, memory_mb, sla)

    def startup_ms(self, memory_mb: float, state: StartState, sla: str = "average") -> float:
        """Cold or warm start-up time in ms of a worker with ``memory_mb``."""
        if memory_mb <= 0:
            raise ValueError(f"startup_ms: memory_mb must be > 0, got {memory_mb!r}")
        return self.startup_model(state).predict(memory_mb, sla)

    # -- queries with provenance -------------------------------------------------------

    def predict_execution(self, function: str, input_bytes: float, memory_mb: float,
                          sla: str = "average") -> Prediction:
        """:meth:`execution_ms` with its sample count and source."""
        model = self.exec_model(function)
        value = self.execution_ms(function, input_bytes, memory_mb, sla)
        return Prediction(value, model.samples, model.source)

    def predict_output(self, function: str, input_bytes: float, sla: str = "average",
                       hint: IOHint | None = None) -> Prediction:
        """:meth:`output_bytes` with its sample count and source."""
        model = self.output_model(function, hint)
        value = self.output_bytes(function, input_bytes, sla, hint)
        return Prediction(value, model.samples, model.source)

    def predict_transfer(self, nbytes: float, memory_mb: float, direction: Direction,
                         sla: str = "average") -> Prediction:
        """:meth:`transfer_ms` with its sample count and source."""
        model = self.transfer_model(direction)
        value = self.transfer_ms(nbytes, memory_mb, direction, sla)
        return Prediction(value, model.samples, model.source)

    def predict_startup(self, memory_mb: float, state: StartState,
                        sla: str = "average") -> Prediction:
        """:meth:`startup_ms` with the samples behind that memory size and the source."""
        model = self.startup_model(state)
        value = self.startup_ms(memory_mb, state, sla)
        return Prediction(value, model.samples_at(memory_mb), model.source)


def _ratio_about_median(residuals: Empirical) -> Empirical:
    """``residuals`` rescaled so that its median is 1."""
    median = residuals.quantile(0.5)
    if median <= 0 or len(residuals) == 1:
        return Empirical.constant(1.0)
    return Empirical.of([v / median for v in residuals.values])
