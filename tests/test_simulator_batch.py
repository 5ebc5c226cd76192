"""The simulated client stores the DAG parts and literals as one batch, like the runtime."""

from __future__ import annotations

import numpy as np
import pytest

from faasplan import Platform
from faasplan.simulator import Simulation, Simulator
from faasplan.worker import DAG_PART_PREFIX, WorkerOptions, dag_parts, dag_parts_stored
from faasplan.workloads import layered


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    wf = layered(600, 60, 1)
    sim = Simulator(wf, options=WorkerOptions(inline_dag_bytes=0))  # all by reference
    spec = sim.spec(None)
    assert dag_parts_stored(spec)  # some invocation goes by reference: parts are stored
    run = Simulation.create(spec, sim.platform, sim.behaviour, np.random.default_rng(0))
    return spec, run.run()


def test_every_part_becomes_visible_at_once_when_the_batch_is_in(result) -> None:  # type: ignore[no-untyped-def]
    spec, res = result
    parts = dag_parts(spec)
    stored = {k: t for k, t in res.stored_at.items() if k.startswith(DAG_PART_PREFIX)}
    assert set(stored) == set(parts)
    assert len(set(stored.values())) == 1
    platform = Platform()
    rate = min(platform.client_bandwidth_mb_s, platform.storage_bandwidth_mb_s) * 1000.0
    assert next(iter(stored.values())) == pytest.approx(sum(parts.values()) / rate, rel=1e-9)
    assert res.client_bytes == sum(parts.values())


def test_no_worker_starts_before_the_batch_is_acknowledged(result) -> None:  # type: ignore[no-untyped-def]
    _spec, res = result
    visible = max(res.stored_at[k] for k in res.stored_at if k.startswith(DAG_PART_PREFIX))
    first = min(w.invoked_ms for w in res.workers)
    assert first == pytest.approx(visible + Platform().storage_latency_ms, rel=1e-9)
