"""The Redis runtime against a real redis-server and real worker processes.

Every workload must give the result of ``run_local`` under several plans; faults (task
errors, killed workers, tampered payloads, a Redis restart, concurrent runs) must end in a
clear error or a correct result, never in a hang.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import redis

from faasplan.predictors.metrics import load_metrics, validate_records
from faasplan.runtime import (
    EmbeddedRedis,
    InsecureRedisError,
    LocalFaaS,
    MissingRequirementsError,
    PayloadAuthError,
    RedisServerNotFoundError,
    RemoteTaskError,
    RunStateLostError,
    RuntimeConfig,
    Signer,
    WorkerLostError,
    new_key,
    pool_queue,
    run,
    worker_main,
)
from faasplan.runtime.manifest import QueuedInvocation, embedded_entry, seal_invocation
from faasplan.runtime.security import KEY_ENV, check_redis_url
from faasplan.worker import Invocation, Opt, Payload, Placement, RunSpec, WorkerOptions
from faasplan.worker.inmemory import run_in_memory
from faasplan.workflow import Workflow, task
from faasplan.workflow.codec import encode
from faasplan.workflow.local import profile, run_local
from faasplan.workloads import REGISTRY

pytest_plugins = ("conftest_redis",)

# Worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = RuntimeConfig(lease_ms=1000, drain_s=3.0)


# -- task functions used by the fault tests -------------------------------------------------
@task
def inc(x: int) -> int:
    return x + 1


@task
def boom(x: int) -> int:
    if x > 1:
        raise ValueError(f"bad input {x}")
    return x


@task
def crash_once(x: int, marker: str) -> int:
    """Kill the worker process the first time it runs (the marker file remembers)."""
    if not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


@task
def always_crash(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


@task
def array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@task
def slow(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x + 1


@task
def total(a: np.ndarray, b: Any) -> float:
    return float(a.sum()) + float(b)


@task
def touch(path: str) -> int:
    Path(path).write_text("executed")
    return 1


@task
def corrupt(url: str, key: str, after_member: tuple[str, str] | None = None) -> int:
    """Flip one byte of the stored payload ``key`` (waiting until it exists, and until the
    fan-in set ``after_member[0]`` has an entry for task ``after_member[1]``: entries are
    ``task#mac``)."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10.0

    def tracked(deps: str, task: str) -> bool:
        return any(m.decode().rpartition("#")[0] == task for m in client.smembers(deps))

    while time.monotonic() < deadline:
        ready = client.exists(key) and (after_member is None or tracked(*after_member))
        if ready:
            data = bytearray(client.get(key))
            data[-1] ^= 0xFF
            client.set(key, bytes(data))
            return 0
        time.sleep(0.01)
    raise TimeoutError(f"{key} never appeared")


# -- helpers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(redis_server: Any) -> Iterator[tuple[LocalFaaS, bytes]]:
    """One emulator for the module, so most runs find warm worker processes."""
    key = new_key()
    with LocalFaaS(redis_server.url, key, max_running=4, keep_alive_s=300) as faas:
        yield faas, key


@pytest.fixture
def go(redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> Callable[..., Any]:
    faas, key = pool

    def call(wf: Workflow, plan: Any = None, **kw: Any) -> Any:
        kw.setdefault("timeout_s", 60.0)
        kw.setdefault("config", CONFIG)
        return run(wf, plan, redis_server.url, hmac_key=key, invoker=faas, **kw)

    return call


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def run_keys(server: Any, run_id: str) -> list[bytes]:
    return list(server.client().scan_iter(match=f"fp:{run_id}:*", count=1000))


def mixed_plan(wf: Workflow, seed: int = 0) -> dict[str, Placement]:
    """Planned workers w0..w2 and flexible tasks, every optimization switched on somewhere.

    The reference interpreter runs the plan first (with profiled sizes), so a plan the
    worker logic itself cannot finish is reported as such, not as a runtime hang.
    """
    rng = np.random.default_rng(seed)
    place: dict[str, Placement] = {}
    for tid in wf.topological_order:
        if rng.random() < 0.4:
            opts = {o for o in (Opt.PRELOAD, Opt.PREWARM, Opt.STREAM, Opt.ASYNC_UPLOAD)
                    if rng.random() < 0.5}
            place[tid] = Placement(f"w{rng.integers(3)}", 1024, frozenset(opts))
        else:
            opts = {o for o in (Opt.STREAM, Opt.ASYNC_UPLOAD, Opt.CLUSTER, Opt.PREWARM)
                    if rng.random() < 0.4}
            place[tid] = Placement(None, int(rng.choice([1024, 2048])), frozenset(opts))
    delayed: set[str] = set()
    for tid in wf.topological_order:
        fanins = [d for d in wf.downstream(tid)
                  if len(wf.upstream(d)) > 1 and place[d].worker is None]
        if place[tid].worker is None and fanins and rng.random() < 0.5 \
                and not delayed.intersection(fanins):
            delayed.update(fanins)
            place[tid] = place[tid].with_opts(Opt.DELAYED_IO)
    sizes = {t: p.output_bytes for t, p in profile(wf).items()}
    run_in_memory(RunSpec.build(wf, place), lambda e: Payload(sizes[e.task]))
    return place


PLANS: dict[str, Callable[[Workflow], Any]] = {
    "flexible": lambda wf: None,
    "one-worker": lambda wf: {t: Placement("w0", 1024) for t in wf.topological_order},
    "mixed": mixed_plan,
}


# -- correctness under plans ------------------------------------------------------------------
def test_mixed_plans_cover_every_optimization() -> None:
    used = Counter(o for build in REGISTRY.values()
                   for p in mixed_plan(build()).values() for o in p.optimizations)
    assert set(used) == set(Opt)


@pytest.mark.parametrize("plan_kind", list(PLANS))
@pytest.mark.parametrize("workload", list(REGISTRY))
def test_workloads_match_run_local(go: Callable[..., Any], redis_server: Any, workload: str,
                                   plan_kind: str) -> None:
    wf = REGISTRY[workload]()
    result = go(wf, PLANS[plan_kind](wf))
    assert same(result.result, run_local(wf))
    tasks = result.trace.tasks
    assert sorted(tasks["task"]) == sorted(wf.topological_order)
    assert result.makespan_ms > 0
    validate_records(result.metrics())
    if plan_kind == "one-worker":
        assert set(tasks["worker"]) == {"w0"} and len(result.trace.workers) == 1
    assert run_keys(redis_server, result.run_id) == []


def test_subdag_inline_or_by_reference(go: Callable[..., Any]) -> None:
    wf = REGISTRY["tree_reduction"](leaves=8, leaf_size=4)
    dag_bytes = len(encode(wf).blob)
    inline = go(wf)
    by_ref = go(wf, options=WorkerOptions(inline_dag_bytes=0))
    assert same(inline.result, run_local(wf)) and same(by_ref.result, run_local(wf))
    leaves = [t for t in wf.topological_order if t.startswith("make_leaf")]
    t_in = inline.trace.tasks.set_index("task")
    t_ref = by_ref.trace.tasks.set_index("task")
    # A leaf has no input: inline it downloads nothing, by reference it fetches its own
    # record (and its function's code, unless its warm sandbox holds it), never the DAG.
    assert (t_in.loc[leaves, "download_bytes"] == 0).all()
    assert (t_ref.loc[leaves, "download_bytes"] > 0).all()
    assert (t_ref.loc[leaves, "download_bytes"] < dag_bytes).all()


def test_streamed_output_is_read_while_written(go: Callable[..., Any]) -> None:
    first = inc(0, task_id="first")
    produced = array(400_000, task_id="big")  # 3.2 MB, uploaded in 64 KiB chunks
    wf = Workflow(total(produced, slow(first, 0.0, task_id="other"), task_id="sum"))
    plan = {"big": Placement("w0", 1024, frozenset({Opt.STREAM})),
            "first": Placement("w1", 1024), "other": Placement("w1", 1024),
            "sum": Placement("w1", 1024)}
    result = go(wf, plan, config=RuntimeConfig(lease_ms=1000, stream_chunk_bytes=65536))
    assert result.result == run_local(wf)
    downloads = result.trace.transfers["sum"][0]
    assert [d for d in downloads if d[0] > 3_000_000] and all(d[2] for d in downloads
                                                               if d[0] > 3_000_000)


def test_progress_and_metrics(go: Callable[..., Any], tmp_path: Path) -> None:
    wf = REGISTRY["wordcount"]()
    seen: list[Any] = []
    result = go(wf, progress=seen.append, metrics_path=tmp_path / "m.parquet")
    assert [p.done for p in seen] == list(range(1, len(wf) + 1))
    assert sum(seen[-1].per_worker.values()) == len(wf)
    frame = result.metrics()
    assert len(frame) == len(wf)
    firsts = frame[frame["startup"] != "none"]
    assert set(firsts["startup"]) <= {"cold", "warm"} and len(firsts) >= 1
    assert (frame.loc[frame["startup"] == "none", "startup_ms"] == 0).all()
    saved = load_metrics(tmp_path / "m.parquet")
    assert sorted(saved["task"]) == sorted(wf.topological_order)
    assert set(saved["run_id"]) == {result.run_id}


def test_keep_data_leaves_outputs(go: Callable[..., Any], redis_server: Any) -> None:
    wf = Workflow(inc(inc(1), task_id="last"))
    result = go(wf, keep_data=True)
    client = redis_server.client()
    assert client.exists(f"fp:{result.run_id}:d:out:last")
    client.delete(*run_keys(redis_server, result.run_id))


# -- failures -----------------------------------------------------------------------------
def test_task_exception_reaches_client_promptly(go: Callable[..., Any],
                                                redis_server: Any) -> None:
    wf = Workflow(inc(boom(inc(1)), task_id="after"))
    start = time.monotonic()
    with pytest.raises(RemoteTaskError, match=r"task 'boom-0' .*ValueError: bad input 2") as err:
        go(wf, run_id="boom-run")
    assert time.monotonic() - start < 10
    # Functions shipped by value have no source file: the frame is named, not quoted.
    assert re.search(r"line \d+, in boom\nValueError: bad input 2", err.value.remote_traceback)
    assert run_keys(redis_server, "boom-run") == []


def test_killed_worker_is_retried(go: Callable[..., Any], tmp_path: Path) -> None:
    wf = Workflow(inc(crash_once(inc(1), str(tmp_path / "marker"))))
    result = go(wf)
    assert result.result == run_local(wf) == 21  # the marker exists now: no crash locally
    assert result.retries == 1


def test_killed_worker_gives_up_after_max_retries(go: Callable[..., Any]) -> None:
    wf = Workflow(inc(always_crash(inc(1)), task_id="after"))
    with pytest.raises(WorkerLostError,
                       match=r"giving up after 1 retry.*Unfinished tasks: after, always_crash"
                       ) as err:
        go(wf, max_retries=1)
    assert err.value.attempts == 2


def test_tampered_input_is_rejected_by_the_worker(go: Callable[..., Any],
                                                  redis_server: Any) -> None:
    rid = "tamper-input"
    # 80 kB: too big to travel with an invocation, so the fan-in fetches it from Redis
    # after the tampering task (which waits until "src" was tracked) is done.
    src = array(10_000, task_id="src")
    bad = corrupt(redis_server.url, f"fp:{rid}:d:out:src", (f"fp:{rid}:deps:sink", "src"),
                  task_id="tamper")
    with pytest.raises(PayloadAuthError,
                       match=rf"run {rid}: payload '{rid}/[0-9a-f]+/out:src' failed"):
        go(Workflow(total(src, bad, task_id="sink")), run_id=rid)


def test_tampered_result_is_rejected_by_the_client(go: Callable[..., Any],
                                                   redis_server: Any) -> None:
    rid = "tamper-result"
    wf = Workflow([inc(1, task_id="s1"), corrupt(redis_server.url, f"fp:{rid}:d:out:s1")])
    with pytest.raises(PayloadAuthError, match=r"payload 'tamper-result/[0-9a-f]+/out:s1' failed"):
        go(wf, run_id=rid)


def test_forged_invocation_is_rejected_not_executed(go: Callable[..., Any], redis_server: Any,
                                                    pool: tuple[LocalFaaS, bytes],
                                                    tmp_path: Path) -> None:
    faas, key = pool
    rid, marker = "forged", tmp_path / "executed"
    evil = Workflow(touch(str(marker), task_id="evil"))
    queued = QueuedInvocation(rid, "t:evil", Invocation(None, 1024, ("evil",)),
                              encode(evil).blob, time.time() * 1000)
    sealed = bytearray(seal_invocation(Signer(key), queued))
    sealed[-20] ^= 0x01  # one flipped bit after signing
    entry = embedded_entry(rid, bytes(sealed))
    client = redis_server.client()

    def push_when_started() -> None:
        deadline = time.monotonic() + 20
        while not client.exists(f"fp:{rid}:manifest") and time.monotonic() < deadline:
            time.sleep(0.01)
        client.rpush(pool_queue(faas.pool, 1024), entry)

    pusher = threading.Thread(target=push_when_started)
    pusher.start()
    with pytest.raises(PayloadAuthError, match=r"payload 'forged/inv' failed"):
        go(Workflow(slow(slow(1, 1.0), 1.0)), run_id=rid)
    pusher.join()
    assert not marker.exists()


def test_two_concurrent_runs_share_redis(go: Callable[..., Any], redis_server: Any) -> None:
    workflows = [REGISTRY["tree_reduction"](leaves=16), REGISTRY["gemm"](n=64, block=16)]
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        results[i] = go(workflows[i], None if i == 0 else mixed_plan(workflows[i], seed=3))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert set(results) == {0, 1}
    for i, wf in enumerate(workflows):
        assert same(results[i].result, run_local(wf))
        assert run_keys(redis_server, results[i].run_id) == []


def test_missing_requirements_fail_fast(go: Callable[..., Any]) -> None:
    wf = Workflow(inc(1), requirements=["faasplan-no-such-dist>=1"])
    with pytest.raises(MissingRequirementsError, match=r"faasplan-no-such-dist>=1"):
        go(wf, timeout_s=20)


def test_redis_restart_mid_run_fails_clearly(go: Callable[..., Any], redis_server: Any) -> None:
    rid = "restart"
    wf = Workflow(slow(slow(slow(1, 0.5), 0.5), 0.5))
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = go(wf, run_id=rid, timeout_s=40)
        except Exception as exc:
            outcome["error"] = exc

    client = redis_server.client()
    runner = threading.Thread(target=target)
    start = time.monotonic()
    runner.start()
    while not client.exists(f"fp:{rid}:inv") and time.monotonic() - start < 20:
        time.sleep(0.01)
    redis_server.restart(down_s=0.3)
    runner.join(45)
    assert not runner.is_alive() and time.monotonic() - start < 40
    if "error" in outcome:
        assert isinstance(outcome["error"], RunStateLostError)
        assert "no longer holds this run's state" in str(outcome["error"])
    else:
        assert outcome["result"].result == 4


# -- configuration and entry points --------------------------------------------------------
def test_remote_redis_without_password_is_refused() -> None:
    wf = Workflow(inc(1))
    with pytest.raises(InsecureRedisError, match=r"refusing Redis at '10.1.2.3'"):
        run(wf, redis="redis://10.1.2.3:6379/0")
    check_redis_url("redis://:secret@10.1.2.3:6379/0")
    assert worker_main(["--redis", "redis://10.1.2.3:6379"]) == 2


def test_worker_without_key_exits_with_message(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert worker_main(["--redis", "redis://127.0.0.1:1"]) == 2
    assert KEY_ENV in capsys.readouterr().err


def test_standalone_worker_joins_the_pool(redis_server: Any) -> None:
    key = new_key()
    env = dict(os.environ, **{KEY_ENV: key.hex()})
    worker = subprocess.Popen([sys.executable, "-m", "faasplan.runtime.worker", "--redis",
                               redis_server.url, "--memory", "1024"], env=env,
                              stderr=subprocess.PIPE)
    try:
        wf = REGISTRY["image_pipeline"](images=2, size=32)
        result = run(wf, None, redis_server.url, hmac_key=key, invoker="external",
                     timeout_s=60, config=CONFIG)
        assert same(result.result, run_local(wf))
        assert set(result.trace.tasks["startup_state"]) <= {"cold", "warm", "none"}
        assert result.trace.workers["container"].nunique() == 1  # the one external process
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.stderr.read().decode() if worker.stderr else ""


def test_missing_redis_server_says_how_to_fix() -> None:
    with pytest.raises(RedisServerNotFoundError, match=r"apt-get install redis-server.*--redis"):
        EmbeddedRedis(executable="/nonexistent/redis-server")


def test_default_run_starts_its_own_redis_and_workers() -> None:
    wf = Workflow(inc(inc(41)))
    result = run(wf, timeout_s=60)
    assert result.result == 43
    assert result.trace.cold_starts == 1


# -- the lease a worker shares with its heartbeat process ------------------------------------
def test_lease_slot_is_read_whole_and_across_fork() -> None:
    from faasplan.runtime.workerproc import LeaseSlot

    slot = LeaseSlot()
    assert slot.read() == (0, b"")  # nothing published yet: no lease
    slot.write(b'["lease-a"]')
    first = slot.read()
    assert first is not None and first[1] == b'["lease-a"]'
    slot.write(b"")
    second = slot.read()
    assert second is not None and second[1] == b"" and second[0] > first[0]
    with pytest.raises(ValueError, match="does not fit"):
        slot.write(b"x" * LeaseSlot.SIZE)
    # A record being written (odd sequence number) or torn (checksum) is not taken.
    mem = slot._mem
    saved = mem[:]
    mem[0:8] = (second[0] + 1).to_bytes(8, "little")
    assert slot.read() is None
    mem[:] = saved
    slot.write(b'["lease-b"]')
    mem[LeaseSlot.HEADER.size] ^= 0xFF
    assert slot.read() is None
    slot.write(b'["lease-c"]')
    # Written by the parent after the fork, read by the child.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        os.read(read_end, 1)  # the parent has written
        got = slot.read()
        os._exit(0 if got is not None and got[1] == b'["lease-d"]' else 1)
    os.close(read_end)
    slot.write(b'["lease-d"]')
    os.write(write_end, b"x")
    os.close(write_end)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@task
def thread_of(prev: Any, pause_s: float = 0.0) -> tuple[str, ...]:
    time.sleep(pause_s)
    return (*(prev or ()), threading.current_thread().name)


def test_quick_tasks_still_run_on_the_executor_thread(go: Callable[..., Any]) -> None:
    # A worker first waits for a task without its event loop, for at most QUICK_MS; the
    # task itself must still run on the executor thread (never on the loop's), also when
    # it outlasts that wait (t4) and is awaited through the loop.
    chain = None
    for i in range(6):
        chain = thread_of(chain, 0.3 if i == 4 else 0.0, task_id=f"t{i}")
    wf = Workflow(chain)
    for _ in range(3):
        result = go(wf)
        assert len(result.result) == 6
        assert all(name.startswith("faasplan-task") for name in result.result), result.result
        assert float(result.trace.tasks.set_index("task").loc["t4", "exec_ms"]) >= 300.0
