"""Properties of simulated runs over random DAGs and random valid placements.

Each example is also run by the in-memory reference driver of the worker logic: a plan
that deadlocks there is not a valid plan and is skipped; for the others the simulator
must store exactly the bytes the reference stores.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from faasplan import TaskProfile, Workflow, task
from faasplan.simulator import GroundTruth, Platform, Trace, simulate
from faasplan.worker import Execute, Opt, Payload, Placement, RunSpec, Store
from faasplan.worker.inmemory import DeadlockError, InMemoryRun, run_in_memory

MB = 1_000_000
EPS = 1e-6
FLEX_OPTS = (Opt.PREWARM, Opt.CLUSTER, Opt.STREAM, Opt.ASYNC_UPLOAD, Opt.DELAYED_IO)
PLANNED_OPTS = (Opt.PRELOAD, Opt.PREWARM, Opt.STREAM, Opt.ASYNC_UPLOAD)
WORKERS = ("w0", "w1", "w2")
MEMORY = {"w0": 1024, "w1": 1769, "w2": 3008}


@task
def step(*inputs: object) -> int:
    return 0


# Sizes straddle the 16 KiB carry threshold: small outputs travel in invocations.
sizes = st.sampled_from([0, 100, 16 * 1024, 16 * 1024 + 1, 300_000, 3 * MB])
times = st.sampled_from([0.0, 1.0, 40.0, 250.0])


@st.composite
def dags(draw: st.DrawFn) -> tuple[Workflow, dict[str, tuple[tuple[str, int], ...]]]:
    """A random DAG of 1-9 tasks (each takes up to 3 earlier tasks) and its literals."""
    n = draw(st.integers(1, 9))
    nodes: list[object] = []
    literals: dict[str, tuple[tuple[str, int], ...]] = {}
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        tid = f"t{i}"
        nodes.append(step(*(nodes[p] for p in sorted(parents)), task_id=tid,
                          profile=TaskProfile(draw(times), draw(sizes))))
        keys = draw(st.lists(st.sampled_from(["lit-a", "lit-b"]), max_size=2, unique=True))
        if keys:
            literals[tid] = tuple((k, 2 * MB if k == "lit-a" else 50_000) for k in keys)
    has_child = {id(u) for nd in nodes for u in nd.upstream}  # type: ignore[attr-defined]
    sinks = [nd for nd in nodes if id(nd) not in has_child]
    return Workflow(sinks, detect=False), literals  # type: ignore[arg-type]


def _one_delayed_per_fan_in(wf: Workflow, places: dict[str, Placement]) -> None:
    """Drop DELAYED_IO where a fan-in already has a delayed-I/O upstream (the rule)."""
    owner: dict[str, str] = {}
    for tid in wf.topological_order:
        p = places[tid]
        if p.worker is not None or not p.has(Opt.DELAYED_IO):
            continue
        fan_ins = [d for d in wf.downstream(tid)
                   if len(wf.upstream(d)) > 1 and places[d].worker is None]
        if any(d in owner for d in fan_ins):
            places[tid] = Placement(None, p.memory_mb, p.optimizations - {Opt.DELAYED_IO})
        else:
            owner.update(dict.fromkeys(fan_ins, tid))


@st.composite
def placements(draw: st.DrawFn, wf: Workflow, mode: str) -> dict[str, Placement]:
    places: dict[str, Placement] = {}
    for tid in wf.topological_order:
        if mode == "flexible":
            worker = None
        elif mode == "one":
            worker = "w0"
        else:
            worker = draw(st.sampled_from((None, *WORKERS)))
        choices = FLEX_OPTS if worker is None else PLANNED_OPTS
        opts = frozenset(draw(st.lists(st.sampled_from(choices), max_size=3)))
        memory = draw(st.sampled_from([1024, 1769])) if worker is None else MEMORY[worker]
        places[tid] = Placement(worker, memory, opts)
    _one_delayed_per_fan_in(wf, places)
    return places


def _reference(spec: RunSpec, truth: GroundTruth,
               literals: Mapping[str, tuple[tuple[str, int], ...]]) -> InMemoryRun:
    def execute(eff: Execute) -> Payload:
        inputs = sum(p.nbytes for p in eff.inputs.values())
        return Payload(truth.output_bytes(eff.task, inputs, None))  # type: ignore[arg-type]

    preload = {k: Payload(n) for lits in literals.values() for k, n in lits}
    return run_in_memory(spec, execute, preload)


def _check(wf: Workflow, places: dict[str, Placement],
           literals: dict[str, tuple[tuple[str, int], ...]], seed: int) -> None:
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=0.3)
    spec = RunSpec.build(wf, places, literals=literals)
    try:
        ref = _reference(spec, truth, literals)
    except DeadlockError:
        assume(False)  # not a valid plan: the reference driver deadlocks too
        raise
    trace = simulate(wf, places, platform, seed=seed, behaviour=truth, literals=literals)
    _check_trace(wf, trace, ref)
    again = simulate(wf, places, platform, seed=seed, behaviour=truth, literals=literals)
    pd.testing.assert_frame_equal(trace.tasks, again.tasks)
    pd.testing.assert_frame_equal(trace.workers, again.workers)
    assert again.makespan_ms == trace.makespan_ms


def _check_trace(wf: Workflow, trace: Trace, ref: InMemoryRun) -> None:
    t = trace.tasks.set_index("task")
    # every task exactly once
    assert len(trace.tasks) == len(wf) and set(t.index) == set(wf)
    assert sorted(ref.executed) == sorted(wf)
    assert t["exec_start_ms"].ge(t["earliest_start_ms"] - EPS).all()
    for tid in wf:
        start = t.at[tid, "exec_start_ms"]
        assert t.at[tid, "start_ms"] <= start + EPS
        assert t.at[tid, "exec_end_ms"] <= t.at[tid, "end_ms"] + EPS
        for up in wf.upstream(tid):
            # inputs exist before use: locally once produced, elsewhere once stored
            assert start >= t.at[up, "exec_end_ms"] - EPS
            if t.at[tid, "worker"] != t.at[up, "worker"]:
                assert start >= t.at[up, "completion_ms"] - EPS
    exec_ms = dict(zip(trace.tasks["task"], trace.tasks["exec_ms"], strict=True))
    critical, _ = wf.critical_path(exec_ms)
    assert trace.makespan_ms >= critical - EPS
    assert trace.makespan_ms >= t["completion_ms"][list(wf.sinks)].max() - EPS
    # uploads are exactly those of the reference driver
    stores = [eff for _, eff in ref.log if isinstance(eff, Store)]
    assert trace.storage_bytes == sum(s.payload.nbytes for s in stores)
    uploaded = {s.task: s.payload.nbytes for s in stores}
    for tid in wf:
        assert t.at[tid, "upload_bytes"] == uploaded.get(tid, 0)
    assert trace.workers["tasks"].sum() == len(wf)
    assert (trace.workers["end_ms"] >= trace.workers["start_ms"]).all()


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


@pytest.mark.parametrize("mode", ["flexible", "one", "mixed"])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_random_plans(mode: str, data: st.DataObject, seed: int) -> None:
    wf, literals = data.draw(dags())
    places = data.draw(placements(wf, mode))
    _check(wf, places, literals, seed)
