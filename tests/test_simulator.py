"""The SimPy driver and its models: exact timings on tiny DAGs, one per optimization."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import simpy

from faasplan import TaskProfile, Workflow, io, task
from faasplan.simulator import (
    DEFAULT_EXEC_MS,
    DEFAULT_EXEC_MS_PER_MIB,
    DEFAULT_OUTPUT_BYTES,
    Endpoint,
    FaaSModel,
    FairShareNetwork,
    GroundTruth,
    Platform,
    PredictedBehaviour,
    Simulation,
    SimulationError,
    SimulationStuckError,
    Storage,
    TaskBehaviour,
    Trace,
    TransferRecord,
    simulate,
    simulate_many,
)
from faasplan.simulator.clock import run_queue
from faasplan.worker import Invocation, Opt, Payload, Placement, RunSpec, WorkerOptions
from faasplan.worker.subdag import subdag_sizes
from faasplan.workflow.wfformat import load_wfformat

matplotlib.use("Agg")

from faasplan.data import trace_names, trace_path

MB = 1_000_000
MEM = 1769  # the reference memory: profiles apply unscaled

# Zero latencies, fixed 100 ms cold starts, 100 MB/s workers, unlimited storage: a 10 MB
# transfer takes exactly 100 ms.
SIMPLE = Platform(
    storage_latency_ms=0.0, invocation_base_ms=0.0, invocation_ms_per_kib=0.0,
    invoke_call_ms=0.0, cold_start_ms=100.0, cold_start_memory_exponent=0.0,
    cold_start_sigma=0.0, warm_start_ms=5.0, storage_bandwidth_mb_s=math.inf,
    worker_bandwidth_mb_s_at_1024=100.0, worker_bandwidth_exponent=0.0,
    worker_bandwidth_cap_mb_s=100.0, client_bandwidth_mb_s=math.inf)


@task
def step(*inputs: object) -> int:
    return 0


def node(tid: str, *ups: object, ms: float = 100.0, out: int = 0) -> object:
    return step(*ups, task_id=tid, profile=TaskProfile(ms, out))


def run(wf: Workflow, plan: object = None, platform: Platform = SIMPLE, **kw: object) -> Trace:
    return simulate(wf, plan, platform=platform,
                    behaviour=GroundTruth(wf, platform, noise=0.0), **kw)  # type: ignore[arg-type]


def flex(*opts: Opt) -> Placement:
    return Placement(None, MEM, frozenset(opts))


def on(worker: str, *opts: Opt) -> Placement:
    return Placement(worker, MEM, frozenset(opts))


def row(trace: Trace, tid: str) -> pd.Series:
    return trace.tasks.set_index("task").loc[tid]


# -- Platform -------------------------------------------------------------------------------
def test_platform_rules() -> None:
    p = Platform()
    assert p.vcpu(1769) == pytest.approx(1.0)
    assert p.vcpu(100) == p.min_vcpu
    assert p.vcpu(10**6) == p.max_vcpu
    assert p.exec_factor(1769) == pytest.approx(1.0)
    assert p.exec_factor(1769 / 2) == pytest.approx(2.0 ** p.cpu_exponent)
    assert p.exec_factor(2 * 1769) == pytest.approx(2.0 ** -p.multicore_exponent)
    assert p.worker_bandwidth_mb_s(1024) == pytest.approx(p.worker_bandwidth_mb_s_at_1024)
    assert p.worker_bandwidth_mb_s(10**6) == p.worker_bandwidth_cap_mb_s
    assert p.invocation_ms(2048) == pytest.approx(p.invocation_base_ms
                                                  + 2 * p.invocation_ms_per_kib)
    assert p.cost_usd(2048, 1000.4) == pytest.approx(2 * 1.001 * p.price_per_gb_s
                                                     + p.price_per_request)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("storage_latency_ms", -1, "storage_latency_ms must be >= 0"),
    ("storage_bandwidth_mb_s", 0, "storage_bandwidth_mb_s must be > 0"),
    ("cold_start_ms", math.nan, "cold_start_ms must be a finite"),
    ("warm_start_ms", math.inf, "warm_start_ms must be a finite"),
    ("concurrency_limit", 0, "concurrency_limit must be > 0"),
    ("memory_sizes_mb", (1024, 512), "strictly increasing"),
    ("memory_sizes_mb", (), "non-empty"),
])
def test_platform_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Platform(**{field: value})


def test_platform_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="concurrency_limit must be an integer"):
        Platform(concurrency_limit=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keep_alive_s must be a number"):
        Platform(keep_alive_s="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"min_vcpu .* must be <= max_vcpu"):
        Platform(min_vcpu=4.0, max_vcpu=2.0)


def test_platform_replace_validates_keys_and_values() -> None:
    p = Platform().replace(storage_latency_ms=0, keep_alive_s=math.inf)
    assert p.storage_latency_ms == 0.0 and p.keep_alive_s == math.inf
    with pytest.raises(ValueError, match=r"unknown platform field\(s\) \['latency'\]; "
                                         r"valid fields are memory_sizes_mb, .*storage_latency_ms"):
        Platform().replace(latency=1)
    with pytest.raises(ValueError, match="warm_start_ms must be >= 0"):
        Platform().replace(warm_start_ms=-3)


def test_platform_toml_round_trip(tmp_path: Path) -> None:
    p = Platform(memory_sizes_mb=(128, 4096), storage_bandwidth_mb_s=math.inf,
                 concurrency_limit=7, cold_start_sigma=0.0)
    path = tmp_path / "platform.toml"
    p.to_toml(path)
    assert Platform.from_toml(path) == p
    assert Platform.from_dict(p.to_dict()) == p


def test_platform_from_file_names_unknown_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "lambda.toml"
    path.write_text("storage_latency_ms = 2.0\ncold_start = 300\n")
    with pytest.raises(ValueError, match=r"lambda\.toml: unknown platform field\(s\) "
                                         r"\['cold_start'\]"):
        Platform.from_toml(path)
    path.write_text("storage_latency_ms = -2.0\n")
    with pytest.raises(ValueError, match=r"lambda\.toml: Platform\.storage_latency_ms"):
        Platform.from_toml(path)
    path.write_text("storage_latency_ms = \n")
    with pytest.raises(ValueError, match=r"lambda\.toml: invalid TOML"):
        Platform.from_toml(path)
    with pytest.raises(FileNotFoundError, match="platform file not found"):
        Platform.from_toml(tmp_path / "missing.toml")


# -- network ----------------------------------------------------------------------------
def _finish_times(capacity: float, transfers: list[tuple[float, float, Endpoint]]
                  ) -> list[float]:
    """Start each (start ms, bytes, endpoint) transfer; return when each one ends."""
    env = simpy.Environment()
    net = FairShareNetwork(env, capacity)
    ends = [math.nan] * len(transfers)

    def starter(i: int, start: float, nbytes: float, ep: Endpoint):  # type: ignore[no-untyped-def]
        yield env.timeout(start)
        net.transfer(nbytes, ep, lambda _: ends.__setitem__(i, env.now))

    for i, (start, nbytes, ep) in enumerate(transfers):
        env.process(starter(i, start, nbytes, ep))
    env.run()
    return ends


def test_network_one_transfer_is_limited_by_the_slower_link() -> None:
    assert _finish_times(10.0, [(0, 100, Endpoint(100.0))]) == [pytest.approx(10.0)]
    assert _finish_times(100.0, [(0, 100, Endpoint(10.0))]) == [pytest.approx(10.0)]


def test_network_server_bandwidth_is_shared() -> None:
    ends = _finish_times(10.0, [(0, 100, Endpoint(100.0)), (0, 100, Endpoint(100.0))])
    assert ends == [pytest.approx(20.0), pytest.approx(20.0)]
    # The second starts halfway: 50 bytes alone, then both at 5/ms.
    ends = _finish_times(10.0, [(0, 100, Endpoint(100.0)), (5, 100, Endpoint(100.0))])
    assert ends == [pytest.approx(15.0), pytest.approx(20.0)]


def test_network_is_max_min_fair() -> None:
    # A slow endpoint keeps its 2/ms; the two fast ones split the remaining 8/ms.
    slow, fast1, fast2 = Endpoint(2.0), Endpoint(100.0), Endpoint(100.0)
    ends = _finish_times(10.0, [(0, 20, slow), (0, 40, fast1), (0, 40, fast2)])
    assert ends == [pytest.approx(10.0), pytest.approx(10.0), pytest.approx(10.0)]


def test_network_endpoint_shares_its_own_link() -> None:
    ep = Endpoint(10.0)
    ends = _finish_times(math.inf, [(0, 100, ep), (0, 50, ep)])
    # Both at 5/ms until the short one ends at 10 ms; the long one alone after that.
    assert ends == [pytest.approx(15.0), pytest.approx(10.0)]


def test_network_zero_bytes_finish_at_once() -> None:
    assert _finish_times(1.0, [(3, 0, Endpoint(1.0))]) == [3.0]


# -- FaaS model -------------------------------------------------------------------------
def test_faas_warm_pool_keep_alive_and_queue() -> None:
    env = simpy.Environment()
    faas = FaaSModel(env, SIMPLE.replace(keep_alive_s=1.0, concurrency_limit=1),
                     np.random.default_rng(0))
    assert faas.admit() is None
    first = faas.start(MEM)
    assert (first.state, first.startup_ms) == ("cold", 100.0)
    waiting = faas.admit()
    assert waiting is not None and not waiting.triggered
    faas.release(first)
    assert waiting.triggered  # the slot went to the queued invocation
    second = faas.start(MEM)
    assert (second.state, second.container, second.startup_ms) == ("warm", 0, 5.0)
    assert faas.start(2 * MEM).state == "cold"  # pools are per memory size
    faas.release(second)
    env.run(until=1001.0)
    assert faas.start(MEM).state == "cold"  # idle longer than the keep-alive


def test_invocation_delay_grows_with_payload() -> None:
    p = Platform(invocation_base_ms=10.0, invocation_ms_per_kib=1.0)
    faas = FaaSModel(simpy.Environment(), p, np.random.default_rng(0))
    small = Invocation(None, MEM, ("t",))
    big = Invocation(None, MEM, ("t",), carried={"out:u": Payload(10 * 1024)})
    assert faas.invocation_ms(small) == pytest.approx(10.0 + 256 / 1024)
    assert faas.invocation_ms(big) - faas.invocation_ms(small) == pytest.approx(10.0)


# -- behaviours -------------------------------------------------------------------------
@task(io=io.linear(0.5))
def halve(x: object) -> object:
    return x


@task
def plain(x: object) -> object:
    return x


def test_ground_truth_profile_hint_and_defaults() -> None:
    wf = Workflow([node("p", ms=200.0, out=123), halve(1, task_id="h"), plain(1, task_id="d")])
    gt = GroundTruth(wf, Platform(), noise=0.0)
    rng = np.random.default_rng(0)
    assert isinstance(gt, TaskBehaviour)
    assert gt.exec_ms("p", MEM, 0, rng) == pytest.approx(200.0)
    assert gt.exec_ms("p", MEM // 2, 0, rng) == pytest.approx(200.0 * Platform().exec_factor(
        MEM // 2))
    assert gt.output_bytes("p", 10, rng) == 123
    assert gt.output_bytes("h", 1000, rng) == 500
    assert gt.output_bytes("d", 1000, rng) == DEFAULT_OUTPUT_BYTES
    assert gt.exec_ms("d", MEM, 2 * 1024 * 1024, rng) == pytest.approx(
        DEFAULT_EXEC_MS + 2 * DEFAULT_EXEC_MS_PER_MIB)
    override = GroundTruth(wf, Platform(), {"d": TaskProfile(7.0, 8)}, noise=0.0)
    assert (override.exec_ms("d", MEM, 0, rng), override.output_bytes("d", 0, rng)) == (7.0, 8)
    with pytest.raises(KeyError, match="GroundTruth knows no task 'nope'"):
        gt.exec_ms("nope", MEM, 0, rng)
    with pytest.raises(KeyError, match=r"profiles for tasks not in workflow .*\['zz'\]"):
        GroundTruth(wf, Platform(), {"zz": TaskProfile(1.0, 1)})
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        GroundTruth(wf, Platform(), noise=-0.1)


def test_ground_truth_noise_is_lognormal_around_the_profile() -> None:
    wf = Workflow(node("p", ms=100.0))
    gt = GroundTruth(wf, Platform(), noise=0.2)
    rng = np.random.default_rng(1)
    draws = np.array([gt.exec_ms("p", MEM, 0, rng) for _ in range(4000)])
    assert np.median(draws) == pytest.approx(100.0, rel=0.03)
    assert np.std(np.log(draws)) == pytest.approx(0.2, rel=0.05)


def test_predicted_behaviour_follows_the_predictor() -> None:
    from faasplan.predictors import Predictor

    wf = Workflow(halve(node("a", out=4000), task_id="h"))
    predictor = Predictor.empty()
    trace = simulate(wf, platform=SIMPLE, behaviour=PredictedBehaviour(wf, predictor, "p90"))
    h = row(trace, "h")
    assert h["exec_ms"] == pytest.approx(predictor.execution_ms(
        halve.name, int(h["input_bytes"]), MEM, "p90"))
    assert h["output_bytes"] == round(predictor.output_bytes(
        halve.name, int(h["input_bytes"]), "p90", hint=halve.io))


class MemoryBound:
    """A behaviour of our own: 1 ms per 10 MB of memory, output = input + 1 byte."""

    def exec_ms(self, task_id: str, memory_mb: int, input_bytes: int,
                rng: np.random.Generator) -> float:
        return memory_mb / 10.0

    def output_bytes(self, task_id: str, input_bytes: int, rng: np.random.Generator) -> int:
        return input_bytes + 1


def test_any_task_behaviour_plugs_in() -> None:
    wf = Workflow(node("c", node("b", node("a"))))
    trace = simulate(wf, {t: Placement("w", 2000) for t in "abc"}, SIMPLE,
                     behaviour=MemoryBound())
    assert trace.tasks["exec_ms"].tolist() == [200.0] * 3
    assert trace.tasks["output_bytes"].tolist() == [1, 2, 3]
    assert trace.makespan_ms == pytest.approx(100.0 + 600.0 + 3 / 100_000)


# -- exact timings ----------------------------------------------------------------------
def test_chain_on_one_flexible_worker() -> None:
    wf = Workflow(node("b", node("a", ms=100.0, out=50 * MB), ms=30.0, out=10 * MB))
    trace = run(wf)
    # cold 100, a 100, b 30 (a's output stays local), sink upload 10 MB = 100
    assert trace.makespan_ms == pytest.approx(330.0)
    assert trace.invocations == 1 and trace.cold_starts == 1
    assert trace.storage_bytes == 10 * MB
    a, b = row(trace, "a"), row(trace, "b")
    assert (a["startup_state"], a["startup_ms"], b["startup_state"]) == ("cold", 100.0, "none")
    assert (a["upload_bytes"], b["download_bytes"]) == (0, 0)
    assert (b["exec_start_ms"], b["completion_ms"], b["upload_ms"]) == pytest.approx(
        (200.0, 330.0, 100.0))


def test_async_upload_shortens_a_chain() -> None:
    a = node("a", out=10 * MB)
    wf = Workflow([node("b", a, ms=500.0), node("c", a)])
    plan = {"a": on("w1"), "b": on("w1"), "c": on("w2")}
    base = run(wf, plan)
    # w1: a 100-200, upload 200-300, b 300-800; w2 starts at 300: cold, fetch, c -> 600
    assert base.makespan_ms == pytest.approx(800.0)
    plan["a"] = on("w1", Opt.ASYNC_UPLOAD)
    fast = run(wf, plan)
    # b runs 200-700 while a's output uploads; c's path is unchanged
    assert fast.makespan_ms == pytest.approx(700.0)
    assert row(fast, "c")["completion_ms"] == pytest.approx(600.0)
    assert row(fast, "a")["end_ms"] == pytest.approx(300.0)


def test_streaming_overlaps_upload_and_download() -> None:
    # x comes first in topological order, so it is w2's entry and starts it at once
    wf = Workflow([node("x", ms=10.0), node("b", node("a", out=10 * MB))])
    plan = {"a": on("w1"), "x": on("w2"), "b": on("w2")}
    base = run(wf, plan)
    # a's upload ends at 300; w2 (idle since 110) downloads 300-400, b runs 400-500
    assert base.makespan_ms == pytest.approx(500.0)
    plan["a"] = on("w1", Opt.STREAM)
    streamed = run(wf, plan)
    # w2 reads while a uploads (200-300): b runs 300-400
    assert streamed.makespan_ms == pytest.approx(400.0)
    b = row(streamed, "b")
    assert (b["exec_start_ms"], b["total_download_ms"]) == pytest.approx((300.0, 100.0))
    assert streamed.transfers["b"][0] == ((10 * MB, 100.0, True),)


def test_preload_hides_a_download() -> None:
    wf = Workflow([node("x", ms=300.0), node("b", node("a", out=10 * MB))])
    plan = {"a": on("w1"), "x": on("w2"), "b": on("w2")}
    base = run(wf, plan)
    # w2 runs x 100-400, then fetches a's output 400-500, b 500-600
    assert base.makespan_ms == pytest.approx(600.0)
    assert row(base, "b")["download_ms"] == pytest.approx(100.0)
    plan["b"] = on("w2", Opt.PRELOAD)
    pre = run(wf, plan)
    # the fetch runs 300-400 in the background while x executes
    assert pre.makespan_ms == pytest.approx(500.0)
    b = row(pre, "b")
    assert (b["download_ms"], b["total_download_ms"], b["download_bytes"]) == pytest.approx(
        (0.0, 100.0, 10 * MB))


def test_prewarm_turns_a_cold_start_warm() -> None:
    a = node("a", ms=150.0)
    wf = Workflow([node("b", a), node("y", a, ms=10.0)])
    plan = {"a": on("w1"), "b": on("w2"), "y": on("w1")}  # y keeps w1's sandbox busy
    base = run(wf, plan)
    # w2 is invoked at 250 (a's empty output travels in the invocation): cold until 350
    assert base.makespan_ms == pytest.approx(450.0)
    assert row(base, "b")["startup_state"] == "cold"
    plan = {**plan, "a": on("w1", Opt.PREWARM)}
    warm = run(wf, plan)
    # an empty invocation at 100 starts a sandbox that idles from 200; w2 takes it warm
    assert warm.makespan_ms == pytest.approx(250.0 + 5.0 + 100.0)
    b = row(warm, "b")
    assert (b["startup_state"], b["startup_ms"]) == ("warm", 5.0)
    assert warm.workers["prewarm"].sum() == 1 and warm.invocations == 3


def test_cluster_avoids_uploads() -> None:
    a = node("a", out=10 * MB)
    wf = Workflow([node("b", a), node("c", a)])
    base = run(wf)
    # a's worker continues with b and delegates c, so a's output must be uploaded
    assert row(base, "a")["upload_bytes"] == 10 * MB
    assert base.makespan_ms == pytest.approx(600.0)  # c: invoked 300, cold, fetch, exec
    clustered = run(wf, {"a": flex(Opt.CLUSTER), "b": flex(), "c": flex()})
    assert clustered.storage_bytes == 0 and clustered.invocations == 1
    assert clustered.makespan_ms == pytest.approx(400.0)  # a, b, c back to back


def test_delayed_io_avoids_the_large_upload() -> None:
    wf = Workflow(node("d", node("a", out=10 * MB), node("b", ms=50.0, out=1 * MB)))
    base = run(wf)
    # a: 100-200, upload 200-300, tracks last and runs d: fetch b 300-310, exec -> 410
    assert base.storage_bytes == 11 * MB
    assert base.makespan_ms == pytest.approx(410.0)
    delayed = run(wf, {"a": flex(Opt.DELAYED_IO), "b": flex(), "d": flex()})
    # a keeps its output; b's tracking (at 160) releases d on a's worker at 200
    assert delayed.storage_bytes == 1 * MB
    assert row(delayed, "a")["upload_bytes"] == 0
    assert delayed.makespan_ms == pytest.approx(310.0)
    assert row(delayed, "d")["worker"] == row(delayed, "a")["worker"]


def test_concurrent_fetches_share_storage_bandwidth() -> None:
    platform = SIMPLE.replace(storage_bandwidth_mb_s=100.0, worker_bandwidth_mb_s_at_1024=1000.0,
                              worker_bandwidth_cap_mb_s=1000.0)
    one = Workflow(node("a"))
    two = Workflow([node("a"), node("b")])
    lit = {"a": (("lit-a", 10 * MB),), "b": (("lit-b", 10 * MB),)}
    alone = run(one, platform=platform, literals={"a": lit["a"]})
    both = run(two, platform=platform, literals=lit)
    assert row(alone, "a")["total_download_ms"] == pytest.approx(100.0)
    assert row(both, "a")["total_download_ms"] == pytest.approx(200.0)
    assert row(both, "b")["total_download_ms"] == pytest.approx(200.0)
    # the client's two uploads shared the storage too: invocations left at 200 ms
    assert both.workers["invoked_ms"].tolist() == pytest.approx([200.0, 200.0])
    assert both.client_bytes == 20 * MB


def test_inputs_known_to_exist_are_read_as_one_request() -> None:
    # c's worker completes d's fan-in last and reads a's and b's outputs together, as the
    # runtime's one MGET: one transfer of 30 MB (300 ms at 100 MB/s) and one round trip
    # for both (separate reads would have ended the 10 MB one at 200 ms).
    platform = SIMPLE.replace(storage_latency_ms=2.0)
    wf = Workflow(node("d", node("a", out=10 * MB), node("b", out=20 * MB),
                       node("c", ms=600.0)))
    trace = run(wf, platform=platform)
    assert row(trace, "d")["worker"] == row(trace, "c")["worker"]
    downs, _ups = trace.transfers["d"]
    assert sorted(n for n, _ms, _s in downs) == [10 * MB, 20 * MB]
    assert [ms for _n, ms, _s in downs] == [pytest.approx(302.0)] * 2
    assert row(trace, "d")["download_bytes"] == 30 * MB


def test_storage_reads_several_keys_in_one_transfer() -> None:
    env = simpy.Environment()
    storage = Storage(env, FairShareNetwork(env, 10.0, plain_callbacks=True), latency_ms=1.0)
    storage.data.update({"x": Payload(30), "y": Payload(70)})
    records = [TransferRecord(0.0), TransferRecord(0.0)]
    got: list[object] = []
    storage.fetch_many(["x", "y"], Endpoint(100.0), records, got.append)
    run_queue(env)  # the simulator's loop: answers are plain callbacks on the queue
    # 100 bytes at the server's 10/ms, then one round trip
    assert got == [[Payload(30), Payload(70)]] and env.now == pytest.approx(11.0)
    assert [(r.key, r.nbytes, r.ready, r.end) for r in records] == \
        [("x", 30, 0.0, pytest.approx(11.0)), ("y", 70, 0.0, pytest.approx(11.0))]
    with pytest.raises(SimulationError, match=r"'z' for task 'q'.*never stored"):
        storage.fetch_many(["x", "z"], Endpoint(100.0), records, got.append,
                           tasks=["q", "q"])


def test_latency_and_invocation_costs_add_up() -> None:
    platform = SIMPLE.replace(storage_latency_ms=2.0, invocation_base_ms=10.0,
                              invoke_call_ms=3.0)
    a = node("a")
    wf = Workflow([node("b", a), node("c", a)])
    trace = run(wf, platform=platform)
    # worker 0: invoked after 10, cold 100, a 110-210; tracking nothing (small output),
    # delegates c (3 ms call), continues b 213-313, sink upload 0 B + round trip -> 315,
    # with the notification behind the upload, in its round trip
    assert row(trace, "b")["exec_start_ms"] == pytest.approx(213.0)
    c = row(trace, "c")  # invoked at 210, arrives at 220 (+ payload time 0), cold -> 320
    assert c["exec_start_ms"] == pytest.approx(320.0)
    assert trace.makespan_ms == pytest.approx(420.0 + 2.0)


@pytest.mark.parametrize("opts", [(), (Opt.STREAM,)], ids=["stored", "streamed"])
def test_a_track_after_a_store_is_answered_with_it(opts: tuple[Opt, ...]) -> None:
    # As the runtime driver does, the track the worker logic asks for right after storing
    # an output (streamed or not) goes behind the store, in its round trip.
    platform = SIMPLE.replace(storage_latency_ms=2.0)
    wf = Workflow([node("d", node("a", ms=100.0, out=MB), node("b", ms=300.0, out=MB))])
    trace = run(wf, {"a": flex(), "b": flex(*opts), "d": flex()}, platform=platform)
    b, d = row(trace, "b"), row(trace, "d")
    assert d["worker"] == b["worker"]  # b's track made d ready: b's worker continues
    # b ends at 400; its 1 MB upload takes 10 ms + a round trip, and the track's answer
    # comes with it (412); then a's output is read: 10 ms + a round trip (424).
    assert b["exec_end_ms"] == pytest.approx(400.0)
    assert d["exec_start_ms"] == pytest.approx(424.0)
    assert trace.makespan_ms == pytest.approx(424.0 + 100.0 + 2.0)


def test_dag_by_reference_is_stored_and_fetched() -> None:
    a = node("a")
    wf = Workflow([node("b", a), node("c", a)])
    inline = run(wf)
    by_ref = run(wf, options=WorkerOptions(inline_dag_bytes=0))
    assert inline.client_bytes == 0
    assert by_ref.client_bytes > 0  # the DAG blob
    assert by_ref.makespan_ms > inline.makespan_ms


def test_concurrency_limit_queues_invocations() -> None:
    wf = Workflow([node("a"), node("b")])
    trace = run(wf, platform=SIMPLE.replace(concurrency_limit=1))
    w = trace.workers.sort_values("start_ms")
    assert w["queued_ms"].tolist() == pytest.approx([0.0, 200.0])  # cold 100 + exec 100
    assert w["startup_state"].tolist() == ["cold", "warm"]  # the freed sandbox is reused
    assert trace.makespan_ms == pytest.approx(200.0 + 5.0 + 100.0)


def test_cost_bills_each_sandbox() -> None:
    wf = Workflow([node("a"), node("b", ms=300.0)])
    platform = SIMPLE.replace(price_per_gb_s=1.0, price_per_request=0.5)
    trace = run(wf, platform=platform)
    gib = MEM / 1024.0
    expected = gib * (0.2 + 0.4) + 2 * 0.5  # start-up billed too: 100+100 and 100+300 ms
    assert trace.cost_usd == pytest.approx(expected)
    assert trace.workers["cost_usd"].sum() == pytest.approx(expected)


# -- stuck runs, plans, determinism ------------------------------------------------------
class LosingUploads(Storage):
    """A store that acknowledges uploads of task outputs but never keeps them."""

    def store(self, key: str, payload: Payload, endpoint: Endpoint, record: TransferRecord,
              *, stream: bool = False) -> simpy.Event:
        if key.startswith("out:"):
            return self.env.timeout(self.latency_ms)
        return super().store(key, payload, endpoint, record, stream=stream)


class LosingTracks(Storage):
    """A store whose dependency sets never report a fan-in as ready."""

    def track(self, task: str, upstream: str, expected: int) -> simpy.Event:
        return self.env.timeout(self.latency_ms, False)


def _stuck_run(wf: Workflow, plan: dict[str, Placement], store: type[Storage]) -> None:
    spec = RunSpec.build(wf, plan)
    env = simpy.Environment()
    storage = store(env, FairShareNetwork(env, math.inf), 0.0)
    rng = np.random.default_rng(0)
    Simulation(spec, env, storage, FaaSModel(env, SIMPLE, rng),
               GroundTruth(wf, SIMPLE, noise=0.0), rng, SIMPLE).run()


def test_stuck_run_names_the_unfinished_tasks() -> None:
    # w2 runs x, then waits for a's output, which is never stored
    wf = Workflow([node("x"), node("b", node("a", out=10 * MB))])
    plan = {"a": on("w1"), "x": on("w2"), "b": on("w2")}
    with pytest.raises(SimulationStuckError, match=r"1 of 3 tasks never executed: b\. .*"
                                                   r"keys \['out:a'\]") as err:
        _stuck_run(wf, plan, LosingUploads)
    assert err.value.unfinished == ("b",)
    fan_in = Workflow(node("d", node("a"), node("b")))
    with pytest.raises(SimulationStuckError, match="never executed: d"):
        _stuck_run(fan_in, {t: flex() for t in "abd"}, LosingTracks)


def test_plan_forms() -> None:
    wf = Workflow(node("b", node("a")))
    placements = {"a": on("w"), "b": on("w")}

    @dataclasses.dataclass
    class HasPlacements:
        placements: dict[str, Placement]

    by_map = run(wf, placements)
    by_obj = run(wf, HasPlacements(placements))
    pd.testing.assert_frame_equal(by_map.tasks, by_obj.tasks)
    assert set(by_map.tasks["worker"]) == {"w"}
    assert set(run(wf).tasks["worker"]) == {f"flex-{wf.topological_order[0]}"}
    assert run(wf).tasks["memory_mb"].tolist() == [SIMPLE.default_memory_mb] * 2
    with pytest.raises(KeyError, match="no placement for task 'b'"):
        run(wf, {"a": on("w")})
    with pytest.raises(TypeError, match="plan must be None, a mapping"):
        run(wf, 42)
    with pytest.raises(TypeError, match="placement of task 'a' must be a Placement"):
        run(wf, {"a": "w", "b": on("w")})


def test_memory_scales_execution() -> None:
    wf = Workflow(node("a", ms=100.0))
    half = run(wf, {"a": Placement(None, MEM // 2)})
    assert row(half, "a")["exec_ms"] == pytest.approx(100.0 * SIMPLE.exec_factor(MEM // 2))
    assert row(half, "a")["memory_mb"] == MEM // 2


def test_same_seed_same_trace_and_replicates() -> None:
    wf = load_wfformat(trace_path("montage_58t.json"))
    first = simulate(wf, seed=7, replicates=3)
    again = simulate(wf, seed=7)
    pd.testing.assert_frame_equal(first.tasks, again.tasks)
    pd.testing.assert_frame_equal(first.workers, again.workers)
    assert len(first.replicate_makespans_ms) == 3
    assert first.replicate_makespans_ms[0] == first.makespan_ms == again.makespan_ms
    assert len(set(first.replicate_makespans_ms)) == 3  # noise differs between replicates
    assert simulate(wf, seed=8).makespan_ms != first.makespan_ms
    many = simulate_many(wf, seed=7, replicates=3)
    assert [t.makespan_ms for t in many] == list(first.replicate_makespans_ms)
    summary = first.summary()
    assert summary["replicates"] == 3 and summary["makespan_p50_ms"] == pytest.approx(
        float(np.median(first.replicate_makespans_ms)))
    with pytest.raises(ValueError, match="replicates must be an integer >= 1"):
        simulate(wf, replicates=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        simulate(wf, seed=-1)


# -- outputs ----------------------------------------------------------------------------
def test_trace_metrics_gantt_and_summary() -> None:
    from faasplan.predictors.metrics import records_to_frame

    wf = load_wfformat(trace_path("epigenomics_41t.json"))
    trace = simulate(wf, seed=3)
    records = trace.metrics(run_id="r1", planner="wukong")
    assert len(records) == len(wf)
    assert {r.run_id for r in records} == {"r1"} and records[0].workflow_hash == wf.structure_hash
    by_task = {r.task: r for r in records}
    tasks = trace.tasks.set_index("task")
    for tid, r in by_task.items():
        assert sum(t.nbytes for t in r.downloads) == tasks.loc[tid, "download_bytes"]
        assert r.startup == tasks.loc[tid, "startup_state"]
    assert sum(r.startup == "cold" for r in records) <= trace.cold_starts
    assert len(records_to_frame(records)) == len(wf)
    copy = pickle.loads(pickle.dumps(trace))  # traces travel between processes in sweeps
    assert copy.metrics(run_id="r1", planner="wukong") == records
    measured = Trace.from_tables(trace.tasks, trace.workers, trace.transfers,
                                 makespan_ms=1.0, cost_usd=0.0, cold_starts=0,
                                 storage_bytes=0, invocations=len(trace.workers),
                                 workflow_hash=wf.structure_hash)
    assert measured.metrics(run_id="r1", planner="wukong") == records
    with pytest.raises(ValueError, match=r"tasks table lacks columns \['exec_ms'\]"):
        Trace.from_tables(trace.tasks.drop(columns="exec_ms"), trace.workers, makespan_ms=1.0,
                          cost_usd=0.0, cold_starts=0, storage_bytes=0, invocations=0)
    fig = trace.gantt()
    assert len(fig.axes[0].get_yticks()) == len(trace.workers)
    summary = trace.summary()
    assert summary["tasks"] == len(wf) and summary["makespan_ms"] == trace.makespan_ms


@pytest.mark.parametrize("name", trace_names())
def test_shared_traces_simulate(name: str) -> None:
    wf = load_wfformat(trace_path(name))
    trace = simulate(wf, seed=0, behaviour=GroundTruth(wf, Platform(), noise=0.0))
    assert sorted(trace.tasks["task"]) == sorted(wf)
    critical, _ = wf.critical_path()
    assert trace.makespan_ms >= critical
    assert (trace.tasks["exec_start_ms"] >= trace.tasks["earliest_start_ms"] - 1e-6).all()


def test_subdag_sizes_match_an_independent_count() -> None:
    import networkx as nx

    from faasplan.worker.subdag import DEFAULT_CODE_NBYTES

    wf = load_wfformat(trace_path("epigenomics_41t.json"))
    task_nbytes = {t: 100 + 10 * (i % 3) for i, t in enumerate(wf)}
    for threshold in (0, 2000, 6000, 10**6):
        spec = RunSpec.build(wf, lambda _t: flex(), WorkerOptions(inline_dag_bytes=threshold),
                             task_nbytes=task_nbytes)
        assert dict(spec.subdag_sizes) == subdag_sizes(spec)
        for tid in wf:
            below = nx.descendants(wf.graph, tid) | {tid}
            exact = sum(task_nbytes[t] for t in below) + DEFAULT_CODE_NBYTES * len(
                {wf.node(t).func.name for t in below})
            size = spec.subdag_nbytes(tid)
            assert (size <= threshold) == (exact <= threshold)
            if exact <= threshold:
                assert size == exact


def test_waiting_for_a_preloaded_input_counts_for_the_task_that_needs_it() -> None:
    from faasplan import task as make_task
    from faasplan.simulator import Platform as P
    from faasplan.worker import Opt as O
    from faasplan.workflow import TaskProfile as TP
    from faasplan.workflow import Workflow as W

    @make_task
    def step(*xs: int) -> int:
        return 1

    s = step(profile=TP(10.0, 100), task_id="s")
    a = step(s, profile=TP(10.0, 100), task_id="a")
    b = step(s, profile=TP(500.0, 100), task_id="b")
    wf = W(step(a, b, profile=TP(10.0, 100), task_id="d"))
    place = {"s": Placement("A", 1769), "a": Placement("A", 1769),
             "b": Placement("B", 1769), "d": Placement("A", 1769, frozenset({O.PRELOAD}))}
    platform = P(cold_start_sigma=0.0)
    t = simulate(wf, place, platform, behaviour=GroundTruth(wf, platform, noise=0.0)
                 ).tasks.set_index("task")
    # a's output stays on worker A: nothing happens after its execution...
    assert t.loc["a", "end_ms"] == pytest.approx(t.loc["a", "exec_end_ms"])
    # ...and the ~500 ms wait for b's output is d's input phase.
    assert t.loc["d", "exec_start_ms"] - t.loc["d", "start_ms"] > 400


def test_host_cores_share_concurrent_executions() -> None:
    # Four independent 100 ms tasks: dedicated vCPUs run them side by side; one host of
    # two cores share them, four executions on two cores: each takes 200 ms.
    from faasplan.platform import Platform

    @task
    def work(i: int) -> int:
        return i

    wf = Workflow([work(i, profile=TaskProfile(100.0, 8)) for i in range(4)], name="four")
    quiet = dict(invocation_base_ms=0.0, cold_start_ms=1.0, cold_start_sigma=0.0,
                 storage_latency_ms=0.0, invoke_call_ms=0.0)
    def run(**host: float):
        platform = Platform(**quiet, **host)
        return simulate(wf, platform=platform, behaviour=GroundTruth(wf, platform, noise=0.0))

    dedicated, shared = run(), run(host_cores=2.0)
    assert dedicated.tasks["exec_ms"].tolist() == pytest.approx([100.0] * 4, rel=1e-6)
    assert shared.tasks["exec_ms"].tolist() == pytest.approx([200.0] * 4, rel=1e-2)
    one = run(host_cores=1.0)
    assert one.makespan_ms == pytest.approx(shared.makespan_ms + 200.0, abs=1.0)
    with pytest.raises(ValueError, match="host_cores"):
        Platform(host_cores=0.0)


def test_transfer_overhead_is_paid_per_transfer_only() -> None:
    from faasplan import workloads
    from faasplan.platform import Platform

    wf = workloads.wordcount()
    base = simulate(wf, seed=2)
    slow = simulate(wf, platform=Platform(transfer_overhead_ms=5.0), seed=2)
    ups = sum(len(up) for _, up in base.transfers.values())
    downs = sum(len(down) for down, _ in base.transfers.values())
    assert ups > 0 and downs > 0
    assert (slow.tasks["upload_ms"] - base.tasks["upload_ms"]).sum() == \
        pytest.approx(5.0 * ups, rel=0.05)
    # Set and channel operations (tracking, notifications) keep the plain round trip.
    assert slow.makespan_ms < base.makespan_ms + 5.0 * (ups + downs) + 1.0


def test_numpy_numbers_and_lists_are_taken_where_python_ones_are() -> None:
    # The effects and tasks are compiled classes with typed fields; their initializers
    # convert, so a planner's NumPy memory, a float threshold or a list still work.
    from faasplan.worker import Execute, Fetch, Parallel, Sleep, TaskInfo, Track

    assert Payload(np.int64(3)) == Payload(3) and type(Payload(3.0).nbytes) is int
    assert Track("a", "b", np.int64(2)).expected == 2
    assert Fetch("k", None, 0, 1) == Fetch("k", None, False, True)
    assert Parallel([Fetch("k")]).effects == (Fetch("k"),)
    inv = Invocation(None, np.int64(128), ["a"], 1, np.int32(5))
    assert (inv.memory_mb, inv.roots, inv.inline_dag, inv.dag_nbytes) == (128, ("a",), True, 5)
    assert Sleep(3).ms == 3.0 and Execute("t", {"k": Payload(1)}).inputs == {"k": Payload(1)}
    info = TaskInfo("t", "f", ["u"], [], Placement(None, np.int64(512)))
    assert (info.upstream, info.input_keys, info.memory_mb) == (("u",), ("out:u",), 512)
    assert pickle.loads(pickle.dumps(info)) == info

    from faasplan.workloads import layered

    wf = layered(300, 20, 3)
    plain = simulate(wf, {t: Placement(None, 1024) for t in wf.tasks}, seed=2)
    numpy = simulate(wf, {t: Placement(None, np.int64(1024)) for t in wf.tasks}, seed=2,
                     options=WorkerOptions(carry_bytes=16.0 * 1024))
    assert numpy.makespan_ms == plain.makespan_ms
    assert numpy.tasks.equals(plain.tasks)


def test_storage_runs_on_simpy_s_own_loop_as_on_run_queue() -> None:
    # The storage model takes over the environment's queue (its clock); env.run() still
    # runs it, through the clock, to the same times.
    from faasplan.simulator import FairShareNetwork
    from faasplan.simulator.network import Endpoint
    from faasplan.simulator.storage import Storage, TransferRecord

    def scenario(env: simpy.Environment, seen: list[tuple[str, float]]) -> None:
        storage = Storage(env, FairShareNetwork(env, 100.0), 1.0)
        writer, reader = Endpoint(10.0), Endpoint(20.0)

        def write(env: simpy.Environment):  # type: ignore[no-untyped-def]
            yield env.timeout(2)
            yield storage.store("k", Payload(300), writer, TransferRecord(env.now))
            seen.append(("stored", env.now))

        def read(env: simpy.Environment):  # type: ignore[no-untyped-def]
            payload = yield storage.fetch("k", reader, TransferRecord(env.now), wait=True)
            seen.append((f"read {payload.nbytes}", env.now))

        env.process(write(env))
        env.process(read(env))

    on_simpy: list[tuple[str, float]] = []
    env = simpy.Environment()
    scenario(env, on_simpy)
    env.run()
    on_queue: list[tuple[str, float]] = []
    env2 = simpy.Environment()
    scenario(env2, on_queue)
    run_queue(env2)
    assert on_simpy == on_queue == [("stored", 33.0), ("read 300", 48.0)]
    env3 = simpy.Environment()
    scenario(env3, [])
    env3.run(until=10)
    assert env3.now == 10
