"""Experiments built on the pure core: predictions of a workflow from past runs."""

from faasplan.experiments.predict import Prediction, critical_path_draws, predict_workflow

__all__ = ["Prediction", "critical_path_draws", "predict_workflow"]
