"""How well the predictors predict: leave-one-run-out cross-validation against the baseline.

Each run in turn is held out; both the fitted :class:`Predictor` and the predecessor's
:class:`BaselinePredictor` learn from the other runs and predict the held-out run's
execution times, output sizes and (non-streamed) transfer times.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from faasplan.predictors.baseline import BaselinePredictor
from faasplan.predictors.fitting import Records, fit_frame
from faasplan.predictors.metrics import as_frame, explode_transfers, validate_records
from faasplan.predictors.models import DEFAULTS, MIN_SAMPLES, Defaults
from faasplan.workflow.io import IOHint

REPORT_COLUMNS = ("function", "model", "samples", "mdape_ours", "mdape_baseline",
                  "p90_coverage")
PREDICTION_COLUMNS = ("run_id", "function", "model", "observed", "ours", "ours_p90",
                      "baseline")
_MODEL_ORDER = {"exec": 0, "output": 1, "download": 2, "upload": 3}
ALL_FUNCTIONS = "*"


def cross_validate(records: Records, hints: Mapping[str, IOHint] | None = None, *,
                   defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES
                   ) -> pd.DataFrame:
    """Leave-one-run-out predictions, one row per held-out observation.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PREDICTION_COLUMNS`: the held-out ``run_id``, ``function``,
        ``model`` (``exec``, ``output``, ``download``, ``upload``), the ``observed`` value,
        our ``"average"`` and ``"p90"`` predictions and the ``baseline`` prediction.

    Raises
    ------
    ValueError
        With fewer than two runs (nothing to hold out).
    """
    df = as_frame(records).reset_index(drop=True)
    validate_records(df)
    runs = sorted(df["run_id"].unique().tolist())
    if len(runs) < 2:
        raise ValueError(f"leave-one-run-out needs metrics of at least 2 runs, got "
                         f"{len(runs)} ({runs}); collect more runs")
    transfers = explode_transfers(df)
    transfers = transfers[~transfers["streamed"]]
    rows: list[tuple[object, ...]] = []
    for run in runs:
        held_out = (df["run_id"] == run).to_numpy()
        train = df[~held_out].reset_index(drop=True)
        ours = fit_frame(train, hints, defaults=defaults, min_samples=min_samples)
        base = BaselinePredictor.fit(train, defaults)
        test = df[held_out]
        for function, x, memory, exec_ms, out in zip(
            test["function"].tolist(), test["input_bytes"].tolist(),
            test["memory_mb"].tolist(), test["exec_ms"].tolist(),
            test["output_bytes"].tolist(), strict=True,
        ):
            rows.append((run, function, "exec", exec_ms,
                         ours.execution_ms(function, x, memory),
                         ours.execution_ms(function, x, memory, "p90"),
                         base.execution_ms(function, x, memory)))
            rows.append((run, function, "output", out, ours.output_bytes(function, x),
                         ours.output_bytes(function, x, "p90"), base.output_bytes(function, x)))
        t = transfers[transfers["run_id"] == run]
        for function, direction, nbytes, memory, ms in zip(
            t["function"].tolist(), t["direction"].tolist(), t["nbytes"].tolist(),
            t["memory_mb"].tolist(), t["ms"].tolist(), strict=True,
        ):
            rows.append((run, function, direction, ms,
                         ours.transfer_ms(nbytes, memory, direction),
                         ours.transfer_ms(nbytes, memory, direction, "p90"),
                         base.transfer_ms(nbytes, memory, direction)))
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def accuracy_report(records: Records, hints: Mapping[str, IOHint] | None = None, *,
                    defaults: Defaults = DEFAULTS, min_samples: int = MIN_SAMPLES
                    ) -> pd.DataFrame:
    """Leave-one-run-out accuracy of our models and of the baseline.

    Returns
    -------
    pandas.DataFrame
        One row per (model, function) and one per model over all functions
        (``function == "*"``), columns :data:`REPORT_COLUMNS`: ``samples`` is the number
        of held-out observations; ``mdape_ours`` / ``mdape_baseline`` the median absolute
        percentage error (in %, over observations > 0) of our ``"average"`` prediction and
        of the baseline; ``p90_coverage`` the % of observations at or below our ``"p90"``
        prediction (90 is ideal).
    """
    predictions = cross_validate(records, hints, defaults=defaults, min_samples=min_samples)
    return summarize(predictions)


def summarize(predictions: pd.DataFrame) -> pd.DataFrame:
    """Turn :func:`cross_validate` output into the :func:`accuracy_report` table."""
    rows = []
    for (model, function), group in predictions.groupby(["model", "function"], sort=True):
        rows.append(_scores(str(function), str(model), group))
    for model, group in predictions.groupby("model", sort=True):
        rows.append(_scores(ALL_FUNCTIONS, str(model), group))
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    order = report["model"].map(_MODEL_ORDER).fillna(len(_MODEL_ORDER))
    last = (report["function"] == ALL_FUNCTIONS).astype(int)
    report = report.assign(_order=order, _last=last).sort_values(
        ["_order", "_last", "function"], kind="stable")
    return report.drop(columns=["_order", "_last"]).reset_index(drop=True)


def _scores(function: str, model: str, group: pd.DataFrame) -> dict[str, object]:
    observed = group["observed"].to_numpy(dtype=float)
    return {
        "function": function,
        "model": model,
        "samples": len(group),
        "mdape_ours": mdape(observed, group["ours"].to_numpy(dtype=float)),
        "mdape_baseline": mdape(observed, group["baseline"].to_numpy(dtype=float)),
        "p90_coverage": 100.0 * float(np.mean(observed <= group["ours_p90"].to_numpy())),
    }


def mdape(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Median absolute percentage error in %, over observations > 0 (NaN if none)."""
    positive = observed > 0
    if not positive.any():
        return float("nan")
    errors = np.abs(predicted[positive] - observed[positive]) / observed[positive]
    return 100.0 * float(np.median(errors))
