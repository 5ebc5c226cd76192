"""Example workflows with real Python tasks, by name in :data:`REGISTRY`.

Each builder has defaults for every parameter and returns a :class:`~faasplan.Workflow`
that :func:`faasplan.workflow.local.run_local` can execute. :func:`wfchef` (the
``wfcommons`` extra) generates synthetic instances of real applications instead, and
:func:`layered` synthetic layered DAGs of any size.

>>> sorted(REGISTRY)
['gemm', 'image_pipeline', 'montage_like', 'tree_reduction', 'wordcount']
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType

from faasplan.workflow import Workflow
from faasplan.workloads.gemm import gemm
from faasplan.workloads.image import image_pipeline
from faasplan.workloads.layered import layered
from faasplan.workloads.montage import montage_like
from faasplan.workloads.tree import tree_reduction
from faasplan.workloads.wfchef import wfchef
from faasplan.workloads.wordcount import wordcount

REGISTRY: Mapping[str, Callable[..., Workflow]] = MappingProxyType({
    "tree_reduction": tree_reduction,
    "gemm": gemm,
    "wordcount": wordcount,
    "image_pipeline": image_pipeline,
    "montage_like": montage_like,
})

__all__ = ["REGISTRY", "gemm", "image_pipeline", "layered", "montage_like", "tree_reduction",
           "wfchef", "wordcount"]
