"""The compiled core (``setup.py``, :mod:`faasplan._native`): built, switchable, and the
same simulator as its Python sources, to the bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from faasplan._native import CORE, ENV, compiled_modules, pure_python_requested

# Simulated runs of several shapes, platforms and plans; each run's trace is digested
# (every column of the task and worker tables, at full float precision) and printed.
DIGESTS = textwrap.dedent("""
    import hashlib, json, sys
    from faasplan import Platform
    from faasplan.conformance.cases import random_case
    from faasplan.data import trace_path
    from faasplan.simulator import Simulator
    from faasplan.worker import Opt, Placement
    from faasplan.workflow.wfformat import load_wfformat
    from faasplan.workloads import layered, tree_reduction

    def digest(trace):
        h = hashlib.sha256(repr((trace.makespan_ms, trace.replicate_makespans_ms)).encode())
        for frame in (trace.tasks, trace.workers):
            h.update(frame.to_csv(float_format=repr).encode())
        return h.hexdigest()

    platforms = {"default": Platform(), "shared cores": Platform(host_cores=2),
                 "limit 8": Platform(concurrency_limit=8)}
    out = {}
    for name, wf in (("layered", layered(400, 40, 1)), ("tree", tree_reduction(leaves=128)),
                     ("montage", load_wfformat(trace_path("montage_1738t")))):
        order = wf.topological_order
        mixed = {t: Placement(f"w{i % 9}" if i % 3 else None, 1024 + 1024 * (i % 2),
                              frozenset({Opt.STREAM} if i % 5 == 0 else
                                        {Opt.ASYNC_UPLOAD} if i % 7 == 0 else ()))
                 for i, t in enumerate(order)}
        for pname, platform in platforms.items():
            sim = Simulator(wf, platform)
            out[f"{name}/{pname}/wukong"] = digest(sim.run(None, seed=3, replicates=2))
            out[f"{name}/{pname}/mixed"] = digest(sim.run(mixed, seed=3))
    for seed in range(40):
        wf, placements = random_case(seed, max_tasks=25)
        try:
            out[f"random {seed}"] = digest(Simulator(wf).run(placements, seed=seed))
        except Exception as exc:  # a case the simulator refuses: the refusal must match
            out[f"random {seed}"] = f"{type(exc).__name__}: {exc}"
    json.dump(out, sys.stdout)
""")


def _run(code: str, *, pure: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if pure:
        env[ENV] = "1"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _loaded_from(pure: bool) -> dict[str, str]:
    code = ("import importlib, json, faasplan\n"
            f"print(json.dumps({{m: importlib.import_module(m).__file__ for m in {CORE!r}}}))")
    proc = _run(code, pure=pure)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_the_install_compiled_the_core() -> None:
    # setup.py falls back to pure Python when it cannot compile; an install for the tests
    # must not fall back silently (the benchmarks would measure another build). With
    # FAASPLAN_PURE_PYTHON set, nothing of the core may be compiled code.
    if pure_python_requested():
        assert compiled_modules() == []
    else:
        assert compiled_modules() == list(CORE), (
            "the core is not compiled: reinstall with `pip install -e .` and read its "
            "`faasplan build:` notes")


def test_the_switch_loads_the_python_sources() -> None:
    compiled = _loaded_from(pure=False)
    pure = _loaded_from(pure=True)
    assert all(path.endswith(".py") for path in pure.values()), pure
    assert all(not path.endswith(".py") for path in compiled.values()), compiled
    assert {m: os.path.dirname(p) for m, p in compiled.items()} == \
        {m: os.path.dirname(p) for m, p in pure.items()}


@pytest.mark.slow
def test_compiled_and_python_core_simulate_the_same_runs() -> None:
    compiled, pure = _run(DIGESTS, pure=False), _run(DIGESTS, pure=True)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert pure.returncode == 0, pure.stderr[-3000:]
    a, b = json.loads(compiled.stdout), json.loads(pure.stdout)
    assert len(a) == 3 * 3 * 2 + 40
    refused = [k for k, v in a.items() if ":" in v]
    assert len(refused) < 10, refused  # most random cases are runs, not refusals
    assert a == b, [k for k in a if a[k] != b[k]]


def test_info_reports_the_compiled_core() -> None:
    from faasplan.cli import info

    core = info()["compiled_core"]
    assert core["of"] == len(CORE)
    assert core["modules"] == compiled_modules()


def test_the_compiled_heaps_give_heapq_s_order() -> None:
    # The event queue's and the bandwidth model's heaps are written out for the compiler
    # (and are heapq's own functions when interpreted). Pushed and popped in a random
    # interleaving, with many equal times and priorities, entries must come out exactly
    # as heapq gives them (heapq pushes some of them, like a heapify would).
    import heapq
    import random

    from faasplan.simulator import clock

    rng = random.Random(7)
    ours: list[clock.Entry] = []
    theirs: list[tuple[float, int, int]] = []
    out_ours, out_theirs = [], []
    for eid in range(5_000):
        key = (float(rng.randrange(40)), rng.choice((0, 1)), eid)
        entry = clock.Entry(*key, print, None)
        if rng.random() < 0.2:
            heapq.heappush(ours, entry)  # by Entry's own order
        else:
            clock.queue_push(ours, entry)
        heapq.heappush(theirs, key)
        if rng.random() < 0.45:
            out_ours.append(clock.queue_pop(ours))
            out_theirs.append(heapq.heappop(theirs))
    while theirs:
        out_ours.append(clock.queue_pop(ours))
        out_theirs.append(heapq.heappop(theirs))
    assert not ours and [(e.time, e.priority, e.id) for e in out_ours] == out_theirs

    # The bandwidth model's heaps: (key, unique seq, anything).
    flows: list[tuple[object, ...]] = []
    for seq in range(2_000):
        clock.heap_push(flows, (rng.randrange(30) * 0.5, seq, None))
    popped = [clock.heap_pop(flows) for _ in range(2_000)]
    assert popped == sorted(popped, key=lambda e: (e[0], e[1]))
    with pytest.raises(IndexError):
        clock.queue_pop([])
    with pytest.raises(IndexError):
        clock.heap_pop([])


def test_an_environment_s_clock_takes_over_its_queue_in_order() -> None:
    # Steps queued before the clock existed (SimPy's events, plain callbacks) and after
    # it (SimPy's events then go through the clock) run in SimPy's order.
    import simpy

    from faasplan.simulator import clock

    env = simpy.Environment()
    seen: list[str] = []
    env.timeout(2).callbacks.append(lambda _: seen.append("event before"))
    clock.call_later(env, 2, seen.append, "callback")
    env.timeout(1).callbacks.append(lambda _: seen.append("first"))
    assert clock.clock_of(env) is clock.clock_of(env)
    env.timeout(2).callbacks.append(lambda _: seen.append("event after"))
    clock.call_soon(env, seen.append, "now")
    clock.run_queue(env)
    assert seen == ["now", "first", "event before", "callback", "event after"]
    assert env.now == 2

