"""Predictors: learn execution time, output size, transfer and start-up times from metrics.

>>> from faasplan.predictors import Predictor
>>> Predictor.empty().startup_ms(1024, "cold")
250.0
"""

from faasplan.predictors.accuracy import accuracy_report
from faasplan.predictors.baseline import BaselinePredictor
from faasplan.predictors.fitting import fit, fit_frame
from faasplan.predictors.hierarchy import (
    CANDIDATES,
    ExecDistribution,
    FunctionModel,
    Hierarchy,
    MemoryRule,
    TaskModel,
    fit_hierarchy,
    fit_memory_rule,
)
from faasplan.predictors.metrics import (
    COLUMNS,
    SCHEMA,
    MetricsError,
    MetricsRecord,
    Transfer,
    explode_transfers,
    frame_to_records,
    load_metrics,
    records_to_frame,
    save_metrics,
    validate_records,
)
from faasplan.predictors.models import (
    DEFAULTS,
    MIN_SAMPLES,
    Defaults,
    ExecModel,
    OutputModel,
    Prediction,
    StartupModel,
    TransferModel,
)
from faasplan.predictors.predictor import Predictor
from faasplan.predictors.sla import Empirical, parse_sla
from faasplan.predictors.wfrecords import (
    load_history,
    records_from_wfformat,
    single_type,
    workflow_types,
)

__all__ = [
    "CANDIDATES",
    "COLUMNS",
    "DEFAULTS",
    "MIN_SAMPLES",
    "SCHEMA",
    "BaselinePredictor",
    "Defaults",
    "Empirical",
    "ExecDistribution",
    "ExecModel",
    "FunctionModel",
    "Hierarchy",
    "MemoryRule",
    "MetricsError",
    "MetricsRecord",
    "OutputModel",
    "Prediction",
    "Predictor",
    "StartupModel",
    "TaskModel",
    "Transfer",
    "TransferModel",
    "accuracy_report",
    "explode_transfers",
    "fit",
    "fit_frame",
    "fit_hierarchy",
    "fit_memory_rule",
    "frame_to_records",
    "load_history",
    "load_metrics",
    "parse_sla",
    "records_from_wfformat",
    "records_to_frame",
    "save_metrics",
    "single_type",
    "validate_records",
    "workflow_types",
]
