"""The worker logic, driven by the in-memory interpreter: exact effect sequences."""

from __future__ import annotations

import ast
import pathlib

import pytest

import faasplan
from faasplan.worker import (
    Execute,
    Fetch,
    Invocation,
    Invoke,
    Join,
    Notify,
    Opt,
    Parallel,
    Payload,
    Placement,
    RunSpec,
    Spawn,
    Store,
    Track,
    WaitFor,
    WorkerOptions,
    execute_branch,
    initial_invocations,
    rides_behind_store,
)
from faasplan.worker.inmemory import run_in_memory


@faasplan.task
def src() -> int:
    return 1


@faasplan.task
def f(*xs: int) -> int:
    return sum(xs)


def size_of(nbytes: dict[str, int] | None = None, default: int = 10):
    table = nbytes or {}
    return lambda e: Payload(table.get(e.task, default))


def flex(memory: int = 1024, *opts: Opt):
    return lambda t: Placement(None, memory, frozenset(opts))


def names(log):
    """Compact form of a log: (worker, effect kind, main argument)."""
    out = []
    for w, e in log:
        if isinstance(e, Execute | Track):
            arg = e.task
        elif isinstance(e, Fetch | Store):
            arg = e.key
        elif isinstance(e, Invoke):
            arg = e.invocation.roots
        elif isinstance(e, Notify | WaitFor):
            arg = e.channel
        elif isinstance(e, Parallel):
            arg = tuple(names([(w, x)])[0][1:] for x in e.effects)
        else:
            arg = None
        out.append((w, type(e).__name__, arg))
    return out


def per_worker(log):
    """The exact effect sequence of each worker: {worker: [(kind, arg), ...]}."""
    out: dict[int, list] = {}
    for w, kind, arg in names(log):
        out.setdefault(w, []).append((kind, arg))
    return out


def chain():
    return faasplan.Workflow(f(f(src())))


def fan_out():
    s = src()
    return faasplan.Workflow([f(s), f(s), f(s)])


def fan_in():
    return faasplan.Workflow(f(src(), src()))


def diamond():
    s = src()
    return faasplan.Workflow(f(f(s), f(s)))


def test_worker_package_imports_no_io_libraries():
    root = pathlib.Path(faasplan.__file__).parent / "worker"
    forbidden = {"simpy", "redis", "asyncio"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert m.split(".")[0] not in forbidden, f"{path.name} imports {m}"


def test_chain_on_flexible_worker_runs_on_one_worker_and_uploads_only_the_sink():
    spec = RunSpec.build(chain(), flex())
    run = run_in_memory(spec, size_of())
    assert names(run.log) == [
        (0, "Execute", "src-0"),
        (0, "Execute", "f-0"),
        (0, "Execute", "f-1"),
        (0, "Store", "out:f-1"),
        (0, "Notify", "sink:f-1"),
    ]
    assert run.workers == 1


def test_fan_out_continues_with_one_and_delegates_the_others_with_carried_input():
    spec = RunSpec.build(fan_out(), flex())
    run = run_in_memory(spec, size_of())
    assert per_worker(run.log) == {
        0: [("Execute", "src-0"), ("Invoke", ("f-1",)), ("Invoke", ("f-2",)),
            ("Execute", "f-0"), ("Store", "out:f-0"), ("Notify", "sink:f-0")],
        1: [("Execute", "f-1"), ("Store", "out:f-1"), ("Notify", "sink:f-1")],
        2: [("Execute", "f-2"), ("Store", "out:f-2"), ("Notify", "sink:f-2")],
    }
    invoke = run.log[1][1]
    assert set(invoke.invocation.carried) == {"out:src-0"}


def test_fan_out_uploads_a_large_output_instead_of_carrying_it():
    spec = RunSpec.build(fan_out(), flex(), WorkerOptions(carry_bytes=100))
    run = run_in_memory(spec, size_of({"src-0": 1000}))
    seq = per_worker(run.log)
    assert seq[0][:4] == [("Execute", "src-0"), ("Store", "out:src-0"),
                          ("Invoke", ("f-1",)), ("Invoke", ("f-2",))]
    assert seq[1][:2] == [("Fetch", "out:src-0"), ("Execute", "f-1")]
    assert run.log[2][1].invocation.carried == {}


def test_fan_in_is_run_by_the_last_upstream_to_finish():
    spec = RunSpec.build(fan_in(), flex())
    run = run_in_memory(spec, size_of())
    assert per_worker(run.log) == {
        0: [("Execute", "src-0"), ("Store", "out:src-0"), ("Track", "f-0")],
        1: [("Execute", "src-1"), ("Store", "out:src-1"), ("Track", "f-0"),
            ("Fetch", "out:src-0"), ("Execute", "f-0"), ("Store", "out:f-0"),
            ("Notify", "sink:f-0")],
    }
    assert run.executed.count("f-0") == 1


def test_diamond_on_flexible_workers():
    spec = RunSpec.build(diamond(), flex())
    run = run_in_memory(spec, size_of())
    assert per_worker(run.log) == {
        0: [("Execute", "src-0"), ("Invoke", ("f-1",)), ("Execute", "f-0"),
            ("Store", "out:f-0"), ("Track", "f-2")],
        1: [("Execute", "f-1"), ("Store", "out:f-1"), ("Track", "f-2"), ("Fetch", "out:f-0"),
            ("Execute", "f-2"), ("Store", "out:f-2"), ("Notify", "sink:f-2")],
    }


def test_diamond_on_two_planned_workers_waits_for_the_remote_input():
    wf = diamond()
    spec = RunSpec.build(wf, lambda t: Placement("B" if t == "f-1" else "A", 2048))
    run = run_in_memory(spec, size_of())
    assert per_worker(run.log) == {
        0: [("Execute", "src-0"), ("Invoke", ("f-1",)), ("Execute", "f-0"),
            ("Fetch", "out:f-1"), ("Execute", "f-2"), ("Store", "out:f-2"),
            ("Notify", "sink:f-2")],
        1: [("Execute", "f-1"), ("Store", "out:f-1")],
    }
    waiting = next(e for _, e in run.log if isinstance(e, Fetch))
    assert waiting.wait and waiting.task == "f-2"
    invocation = run.log[1][1].invocation
    assert (invocation.worker, invocation.memory_mb) == ("B", 2048)


def test_track_is_idempotent_for_a_retried_upstream():
    spec = RunSpec.build(fan_in(), flex())
    first = Invocation(None, 1024, ("src-0",))
    gen = execute_branch(spec, first)
    assert isinstance(next(gen), Execute)
    assert isinstance(gen.send(Payload(10)), Store)
    track = gen.send(None)
    assert track == Track("f-0", "src-0", expected=2)
    # The in-memory driver counts a repeated upstream once.
    run = run_in_memory(spec, size_of())
    assert run.executed == ["src-0", "src-1", "f-0"]


def test_async_upload_spawns_the_publication_and_joins_it_at_the_end():
    spec = RunSpec.build(chain(), flex(1024, Opt.ASYNC_UPLOAD), WorkerOptions(carry_bytes=0))
    run = run_in_memory(spec, size_of())
    assert per_worker(run.log) == {0: [
        ("Execute", "src-0"), ("Spawn", None), ("Execute", "f-0"), ("Spawn", None),
        ("Execute", "f-1"), ("Spawn", None), ("Join", None),
        ("Store", "out:f-1"), ("Notify", "sink:f-1")]}


def test_cluster_runs_every_ready_dependent_locally():
    spec = RunSpec.build(fan_out(), flex(1024, Opt.CLUSTER), WorkerOptions(carry_bytes=0))
    run = run_in_memory(spec, size_of())
    assert run.workers == 1
    assert [k for _, k, a in names(run.log) if k == "Store"] == ["Store"] * 3
    assert ("Store", "out:src-0") not in [(k, a) for _, k, a in names(run.log)]


def test_delayed_io_keeps_the_large_output_local_and_runs_the_fan_in():
    big, small = src(task_id="big"), src(task_id="small")
    wf = faasplan.Workflow(f(big, small, task_id="join"))
    spec = RunSpec.build(
        wf, lambda t: Placement(None, 1024, frozenset({Opt.DELAYED_IO} if t == "big" else ())),
        WorkerOptions(carry_bytes=0))
    run = run_in_memory(spec, size_of({"big": 10**9}))
    log = names(run.log)
    assert (0, "WaitFor", "ready:join") in log
    assert ("Store", "out:big") not in [(k, a) for _, k, a in log]
    assert (1, "Track", "join") in log and (1, "Notify", "ready:join") in log
    assert run.executed[-1] == "join"
    assert [w for w, e in run.log if isinstance(e, Execute) and e.task == "join"] == [0]


def test_two_delayed_io_upstreams_of_one_fan_in_are_rejected():
    wf = fan_in()
    with pytest.raises(ValueError, match="two delayed-I/O upstream tasks"):
        RunSpec.build(wf, flex(1024, Opt.DELAYED_IO))


def test_preload_spawns_fetches_of_remote_inputs_at_worker_start():
    wf = diamond()
    place = {"src-0": Placement("A", 1024), "f-0": Placement("A", 1024),
             "f-1": Placement("B", 1024),
             "f-2": Placement("A", 1024, frozenset({Opt.PRELOAD}))}
    spec = RunSpec.build(wf, place)
    run = run_in_memory(spec, size_of())
    first = run.log[0][1]
    assert isinstance(first, Spawn)
    assert (0, "Fetch", "out:f-1") in names(run.log)
    assert any(isinstance(e, Join) for _, e in run.log)
    assert run.executed[-1] == "f-2"


def test_stream_marks_store_and_waiting_fetch():
    wf = diamond()
    place = {"src-0": Placement("A", 1024), "f-0": Placement("A", 1024),
             "f-1": Placement("B", 1024, frozenset({Opt.STREAM})), "f-2": Placement("A", 1024)}
    run = run_in_memory(RunSpec.build(wf, place), size_of())
    fetch = next(e for _, e in run.log if isinstance(e, Fetch))
    store = next(e for _, e in run.log if isinstance(e, Store) and e.key == "out:f-1")
    assert fetch.stream and fetch.wait and store.stream


def test_prewarm_invokes_an_empty_worker_for_the_downstream_worker():
    wf = diamond()
    place = {"src-0": Placement("A", 1024, frozenset({Opt.PREWARM})),
             "f-0": Placement("A", 1024), "f-1": Placement("B", 3008),
             "f-2": Placement("A", 1024)}
    run = run_in_memory(RunSpec.build(wf, place), size_of())
    first = run.log[0][1]
    assert isinstance(first, Invoke) and first.invocation.prewarm
    assert first.invocation.memory_mb == 3008


def test_subdag_by_reference_above_the_inline_threshold():
    spec = RunSpec.build(fan_out(), flex(), WorkerOptions(inline_dag_bytes=10))
    run = run_in_memory(spec, size_of())
    inv = next(e.invocation for _, e in run.log if isinstance(e, Invoke))
    assert not inv.inline_dag
    # By reference, the worker fetches the parts of its task (with its inputs), not a DAG.
    first = next(e for w, e in run.log if w == 1)
    root = inv.roots[0]
    assert isinstance(first, Parallel)
    assert [f.key for f in first.effects][:2] == [k for k, _ in spec.task_parts(root)]


def test_initial_invocations_start_each_root_entry_once():
    wf = fan_in()
    spec = RunSpec.build(wf, {"src-0": Placement("A", 1024), "src-1": Placement("A", 1024),
                              "f-0": Placement("A", 1024)})
    assert [i.roots for i in initial_invocations(spec)] == [("src-0",)]
    spec2 = RunSpec.build(wf, flex())
    assert [i.roots for i in initial_invocations(spec2)] == [("src-0",), ("src-1",)]


def test_prewarm_invocation_does_nothing():
    spec = RunSpec.build(chain(), flex())
    assert list(execute_branch(spec, Invocation(None, 1024, ()))) == []


def test_delayed_io_owner_first_runs_the_local_work_that_feeds_its_fan_in():
    # u -> v -> d and u -> d: waiting for d before running v would deadlock.
    u = src(task_id="u")
    v = f(u, task_id="v")
    wf = faasplan.Workflow(f(u, v, task_id="d"))
    spec = RunSpec.build(
        wf, lambda t: Placement(None, 1024, frozenset({Opt.DELAYED_IO} if t == "u" else ())))
    run = run_in_memory(spec, size_of())
    assert run.executed == ["u", "v", "d"]
    assert per_worker(run.log)[0] == [
        ("Execute", "u"), ("Execute", "v"), ("Store", "out:v"), ("Track", "d"),
        ("Notify", "ready:d"),
        ("WaitFor", "ready:d"), ("Execute", "d"), ("Store", "out:d"), ("Notify", "sink:d")]


def test_clustered_siblings_feeding_a_delayed_fan_in_do_not_deadlock():
    # x clusters its fan-out a, b; a owns the delayed fan-in d, whose other input is b.
    # Waiting for d before running b (queued behind it on the same worker) would hang.
    x = src(task_id="x")
    a, b = f(x, task_id="a"), f(x, task_id="b")
    wf = faasplan.Workflow(f(a, b, task_id="d"))
    opts = {"x": {Opt.CLUSTER}, "a": {Opt.DELAYED_IO}}
    spec = RunSpec.build(wf, lambda t: Placement(None, 1024, frozenset(opts.get(t, ()))))
    run = run_in_memory(spec, size_of())
    assert run.executed == ["x", "a", "b", "d"]
    assert run.workers == 1
    kinds = [(k, a) for k, a in per_worker(run.log)[0]]
    assert kinds.index(("Execute", "b")) < kinds.index(("WaitFor", "ready:d"))


def test_a_planned_worker_of_fan_out_siblings_fetches_the_parts_of_its_tasks():
    # B holds f-1 and f-2, siblings under src-0: neither is below the other, so the subDAG
    # of B's entry cannot carry both and B is invoked by reference.
    s = src()
    wf = faasplan.Workflow([f(s), f(s), f(s)])
    place = {"src-0": Placement("A", 1024), "f-0": Placement("A", 1024),
             "f-1": Placement("B", 1024), "f-2": Placement("B", 1024)}
    spec = RunSpec.build(wf, place)
    assert spec.self_contained == frozenset({"A"})
    run = run_in_memory(spec, size_of())
    inv = next(e.invocation for _, e in run.log if isinstance(e, Invoke))
    assert inv.worker == "B" and not inv.inline_dag
    # B fetches the stored parts of each task it runs, with the task's input.
    fetched = [f.key for w, e in run.log if w == 1
               for f in (e.effects if isinstance(e, Parallel) else (e,)) if isinstance(f, Fetch)]
    parts = [k for t in ("f-1", "f-2") for k, _ in spec.task_parts(t)]
    assert [k for k in fetched if k.startswith("dag-")] == list(dict.fromkeys(parts))
    assert sorted(run.executed) == ["f-0", "f-1", "f-2", "src-0"]


def test_what_rides_behind_a_store() -> None:
    # The one rule both drivers apply to the effect asked for right after a store.
    track = Track("d", "a", 2)
    assert rides_behind_store(track) and rides_behind_store(Notify("sink:a"))
    assert rides_behind_store(Parallel((track, Track("e", "a", 2))))
    assert not rides_behind_store(Parallel(()))
    assert not rides_behind_store(Parallel((track, Fetch("out:b"))))
    assert not rides_behind_store(Fetch("out:b"))
    assert not rides_behind_store(Store("out:a", Payload(1)))


def test_task_info_keys_are_derived_and_left_out_of_its_pickle() -> None:
    import pickle

    from faasplan.worker.effects import output_key
    from faasplan.worker.spec import TaskInfo

    info = TaskInfo("c", "m.join", ("a", "b"), ("d",), Placement(None, 1024))
    assert (info.key, info.input_keys) == (output_key("c"), (output_key("a"), output_key("b")))
    data = pickle.dumps(info)
    assert output_key("a").encode() not in data  # made again when loaded, not stored
    back = pickle.loads(data)
    assert back == info and (back.key, back.input_keys) == (info.key, info.input_keys)


def test_effects_compare_and_hash_by_value() -> None:
    a, b = Fetch("out:x", task="t", wait=True), Fetch("out:x", task="t", wait=True)
    assert a == b and hash(a) == hash(b) and a is not b
    assert Fetch("out:x", task="t") != a
    assert len({Track("t", "u", 2), Track("t", "u", 2), Payload(3), Payload(3)}) == 2
