"""Experiments built on the pure core: planning, comparison, sweeps, fidelity, predictions."""

from faasplan.experiments.predict import Prediction, critical_path_draws, predict_workflow

__all__ = ["Prediction", "critical_path_draws", "predict_workflow"]
