"""A metrics store that remembers the workflows its records came from.

Metrics records name a workflow only by its structure hash. Next to a metrics file
``runs.parquet`` the catalog ``runs.parquet.workflows/`` keeps one encoded workflow per
hash, so that ``faasplan compare --history runs.parquet`` can re-plan every workflow type
found in the store, with predictors fitted on its records.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from faasplan.predictors import Predictor
from faasplan.workflow import Workflow
from faasplan.workflow.codec import decode, encode

SUFFIX = ".workflows"


def catalog_dir(metrics_path: str | os.PathLike[str]) -> Path:
    """The catalog folder beside a metrics file."""
    p = Path(metrics_path)
    return p.with_name(p.name + SUFFIX)


def remember_workflow(metrics_path: str | os.PathLike[str], workflow: Workflow) -> Path:
    """Store ``workflow`` in the catalog of ``metrics_path`` (once per structure hash)."""
    folder = catalog_dir(metrics_path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{workflow.structure_hash}.fpwf"
    if not target.exists():
        enc = encode(workflow)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps({"blob": enc.blob, "payloads": enc.payloads}))
        tmp.replace(target)
    return target


def recall_workflows(metrics_path: str | os.PathLike[str]) -> dict[str, Workflow]:
    """Structure hash -> workflow, for every workflow in the catalog of ``metrics_path``."""
    out = {}
    for path in sorted(catalog_dir(metrics_path).glob("*.fpwf")):
        data = pickle.loads(path.read_bytes())
        wf = decode(data["blob"], data["payloads"])
        out[wf.structure_hash] = wf
    return out


class HistoryBehaviour:
    """Tasks behave as a fitted predictor says, with residuals drawn from its history.

    The ground truth of a comparison over a metrics store: each execution time and output
    size is the model's point prediction times a residual drawn at random from those the
    model left on its own records, so replicates spread as the real runs did.
    """

    def __init__(self, workflow: Workflow, predictor: Predictor) -> None:
        self.predictor = predictor
        self._fn = {t: n.func.name for t, n in workflow.tasks.items()}
        self._hint = {t: n.func.io for t, n in workflow.tasks.items()}

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        """A point prediction scaled by a sampled residual."""
        model = self.predictor.exec_model(self._fn[task_id])
        return float(model.point_ms(input_bytes, memory_mb) * _draw(model.residuals, rng))

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        """A point prediction scaled by a sampled residual (rounded, >= 0)."""
        model = self.predictor.output_model(self._fn[task_id], self._hint[task_id])
        return max(0, round(model.point_bytes(input_bytes) * _draw(model.residuals, rng)))


def _draw(residuals: Any, rng: np.random.Generator) -> float:
    values = residuals.values
    return float(values[int(rng.integers(len(values)))]) if len(values) > 1 else 1.0
