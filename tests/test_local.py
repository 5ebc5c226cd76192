"""In-process execution and profiling of workflows."""

from __future__ import annotations

import pickle
import time
from typing import NamedTuple

import numpy as np
import pytest

from faasplan.workflow import SizedBlob, Workflow, task
from faasplan.workflow.local import TaskFailedError, payload_nbytes, profile, run_local


@task
def const(x: object) -> object:
    return x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def zeros(n: int) -> np.ndarray:
    return np.zeros(n)


@task
def concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts)


@task
def divide(a: float, b: float) -> float:
    return a / b


@task
def nap(ms: float) -> str:
    time.sleep(ms / 1000)
    return "awake"


class Log:
    """A leaf argument (not a list), so every task sees the same object."""

    def __init__(self) -> None:
        self.names: list[str] = []


@task
def logged(name: str, log: Log, *deps: object) -> str:
    log.names.append(name)
    return name


class Pair(NamedTuple):
    left: object
    right: object


@task
def describe(grid: list[list[int]], named: dict[str, int], pair: Pair, *, extra: tuple[int, ...]
             ) -> tuple[object, ...]:
    return grid, named, pair, extra


def test_single_task_returns_its_value() -> None:
    assert run_local(Workflow(const(41))) == 41


def test_chain_uses_upstream_results() -> None:
    assert run_local(Workflow(add(add(1, 2), add(3, 4)))) == 10


def test_nested_nodes_replaced_at_every_depth_and_in_kwargs() -> None:
    a, b, c, d = const(1), const(2), const(3), const(4)
    grid, named, pair, extra = run_local(Workflow(describe(
        [[a, b], [c]], {"x": d, "lit": 9}, Pair(a, 5), extra=(d, c))))
    assert grid == [[1, 2], [3]]
    assert named == {"x": 4, "lit": 9}
    assert pair == Pair(1, 5) and isinstance(pair, Pair)
    assert extra == (4, 3)


def test_shared_upstream_runs_once_and_before_dependents() -> None:
    log = Log()
    root = logged("root", log)
    wf = Workflow(logged("sink", log, logged("a", log, root), logged("b", log, root)))
    assert run_local(wf) == "sink"
    assert sorted(log.names) == ["a", "b", "root", "sink"]
    assert log.names[0] == "root" and log.names[-1] == "sink"


def test_several_sinks_return_a_list_in_sinks_order() -> None:
    shared = const(10)
    first, second = add(shared, 1), add(shared, 2)
    wf = Workflow([second, first])
    result = run_local(wf)
    assert isinstance(result, list)
    assert result == [{wf.id_of(first): 11, wf.id_of(second): 12}[s] for s in wf.sinks]
    assert sorted(result) == [11, 12]


def test_failing_task_is_wrapped_with_its_id_and_cause() -> None:
    wf = Workflow(add(divide(1.0, 0.0, task_id="ratio"), 1))
    with pytest.raises(TaskFailedError, match=r"task 'ratio' \(.*divide\) failed: "
                                              r"ZeroDivisionError") as info:
        run_local(wf)
    assert info.value.task_id == "ratio"
    assert info.value.function.endswith("divide")
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_generated_task_id_named_in_failure() -> None:
    with pytest.raises(TaskFailedError, match="task 'divide-0'"):
        run_local(Workflow(divide(1, 0)))


def test_task_failed_error_survives_pickling() -> None:
    err = TaskFailedError("t-1", "mod.fn", "KeyError: 'x'")
    back = pickle.loads(pickle.dumps(err))
    assert (back.task_id, back.function, str(back)) == ("t-1", "mod.fn", str(err))


def test_subdag_needs_its_external_inputs() -> None:
    upstream = const(5, task_id="up")
    wf = Workflow(add(add(upstream, 1, task_id="mid"), 2))
    sub = wf.subdag("mid")
    with pytest.raises(ValueError, match=r"needs the outputs of tasks outside it: \['up'\]"):
        run_local(sub)
    with pytest.raises(ValueError, match=r"inputs \['mid'\] are not external inputs"):
        run_local(sub, inputs={"up": 5, "mid": 0})
    assert run_local(sub, inputs={"up": 100}) == 103


def test_profile_covers_every_task_with_measured_sizes() -> None:
    parts = [zeros(n) for n in (3, 5, 7)]
    wf = Workflow(concat(parts))
    prof = profile(wf)
    assert list(prof) == list(wf.topological_order)
    for tid, p in prof.items():
        assert p.exec_ms >= 0
        # The workflow ending at this task yields the same value the profile measured.
        assert p.output_bytes == payload_nbytes(run_local(Workflow(wf.tasks[tid])))
    assert prof[wf.sinks[0]].output_bytes == 15 * 8


def test_profile_times_execution() -> None:
    wf = Workflow(nap(20, task_id="nap"))
    prof = profile(wf, repeat=3)
    assert prof["nap"].exec_ms >= 20
    assert prof["nap"].output_bytes == len("awake")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_profile_rejects_bad_repeat(bad: object) -> None:
    with pytest.raises(ValueError, match="repeat must be an integer >= 1"):
        profile(Workflow(const(1)), repeat=bad)  # type: ignore[arg-type]


def test_profile_wraps_failures_too() -> None:
    with pytest.raises(TaskFailedError, match="task 'divide-0'"):
        profile(Workflow(divide(1, 0)))


def test_payload_nbytes_by_type() -> None:
    assert payload_nbytes(np.zeros((4, 5), dtype=np.float32)) == 80
    assert payload_nbytes(np.float64(1.5)) == 8
    assert payload_nbytes(b"abcd") == 4
    assert payload_nbytes(bytearray(7)) == 7
    assert payload_nbytes(memoryview(b"xyz")) == 3
    assert payload_nbytes("ab") == 2
    assert payload_nbytes("é") == 2
    assert payload_nbytes(SizedBlob("input.fits", 12345)) == 12345


def test_payload_nbytes_pickles_other_values() -> None:
    small = payload_nbytes({"k": 1})
    big = payload_nbytes({"k": "x" * 10_000})
    assert 0 < small < 100 < 10_000 < big
    # An object array's buffer holds only pointers; the pickled strings are far larger.
    objects = np.array([str(i) * 1000 for i in range(4)], dtype=object)
    assert payload_nbytes(objects) > 4000 > objects.nbytes

