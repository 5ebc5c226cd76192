"""A workflow sent to another process (cloudpickle, as the dashboard's jobs and task code
do) is the same workflow there: same ids, same structure, runnable and encodable."""

from __future__ import annotations

import cloudpickle
import numpy as np

import faasplan
from faasplan.workflow.codec import encode
from faasplan.workflow.local import run_local


def test_a_pickled_workflow_keeps_its_ids_and_runs() -> None:
    wf = faasplan.workloads.tree_reduction(leaves=8)
    again = cloudpickle.loads(cloudpickle.dumps(wf))
    assert again.topological_order == wf.topological_order
    assert again.structure_hash == wf.structure_hash
    for tid in wf.topological_order:
        # ids are found by node identity: the unpickled nodes must be indexed anew
        assert again.id_of(again.node(tid)) == tid
        assert again.upstream(tid) == wf.upstream(tid)
    assert encode(again).blob  # the runtime's encoder looks tasks up by node
    assert np.array_equal(run_local(again), run_local(wf))


def test_a_pickled_subdag_keeps_its_external_inputs() -> None:
    wf = faasplan.workloads.tree_reduction(leaves=8)
    sub = wf.subdag(next(t for t in wf.topological_order if wf.upstream(t)))
    again = cloudpickle.loads(cloudpickle.dumps(sub))
    assert again.external_inputs == sub.external_inputs != frozenset()
    assert [again.upstream(t) for t in again.topological_order] == \
        [sub.upstream(t) for t in sub.topological_order]
