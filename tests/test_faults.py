"""Fault injection against a real redis-server and real worker processes.

Each case is bounded in time and count (the long trial counts are in
``benchmarks/bench_faults.py``): workers killed or stopped at random moments under several
planners, Redis killed and restarted, wrong credentials, reused run ids, tampered data and
control keys, non-deterministic tasks, oversized outputs, ``maxmemory``, a GIL held by C
code, task code ending the interpreter, and a client that dies. Every case must end in
the right result or a clear error, never a wrong result or a hang, and leave no key,
process or file behind.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import psutil
import pytest
import redis

import faasplan
from faasplan.runtime import LocalFaaS, RemoteTaskError, RunStateLostError, RuntimeConfig, new_key
from faasplan.runtime import run as run_workflow
from faasplan.runtime.embedded import find_redis_server
from faasplan.runtime.errors import (
    PayloadAuthError,
    RedisAuthError,
    RedisOutOfMemoryError,
    RedisUnavailableError,
    RunError,
    RunIdInUseError,
    RunTimeoutError,
)
from faasplan.worker import Placement
from faasplan.workflow import Workflow, task
from faasplan.workflow.local import run_local
from faasplan.workloads import REGISTRY

pytest_plugins = ("conftest_redis",)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = RuntimeConfig(lease_ms=1000, drain_s=2.0, outage_s=6.0)


# -- task functions -----------------------------------------------------------------------
@task
def inc(x: int) -> int:
    return x + 1


@task
def noisy(tag: int) -> bytes:
    """A non-deterministic task: a fresh random value at every execution."""
    return os.urandom(16) + bytes([tag])


@task
def echo(x: Any, marker: str = "") -> Any:
    """``x``; the first time (marker file absent) the worker process is killed first."""
    if marker and not os.path.exists(marker):
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@task
def agree(a: bytes, b: bytes) -> bool:
    return a == b


@task
def napping(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x + 1


@task
def exits(x: int, how: str) -> int:
    if how == "exit":
        sys.exit(3)
    raise KeyboardInterrupt("interrupted inside the task")


@task
def regex_bomb(n: int) -> int:
    """Hold the GIL in C code: a backtracking match, about 2**n steps."""
    return 0 if re.match(r"(a+)+$", "a" * n + "b") is None else 1


@task
def blob(nbytes: int) -> bytes:
    return b"x" * nbytes


@task
def size_of(data: bytes) -> int:
    return len(data)


@task
def pid_file(x: int, path: str, seconds: float) -> int:
    """Write this worker's pid (a test stops the process), then work ``seconds``.

    Written to a side file and renamed into place, so a reader that sees the file sees
    the whole pid (not an empty file still being written)."""
    partial = Path(f"{path}.partial")
    partial.write_text(str(os.getpid()))
    os.replace(partial, path)
    time.sleep(seconds)
    return x + 1


# -- servers ------------------------------------------------------------------------------
class Server:
    """A private redis-server with extra settings (persistence, memory limits)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.executable = find_redis_server().path
        self.directory = directory
        self.extra = extra
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.password = secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--dir", str(self.directory), "--save", "",
             *self.extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        probe = self.client()
        while True:
            try:
                if probe.ping():
                    break
            except redis.exceptions.ConnectionError:
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
        probe.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(*extra: str) -> Server:
        server = Server(tmp_path / f"redis{len(made)}", *extra)
        server.directory.mkdir()
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.kill()


@pytest.fixture(scope="module")
def pool(redis_server: Any) -> Iterator[tuple[LocalFaaS, bytes]]:
    key = new_key()
    with LocalFaaS(redis_server.url, key, max_running=4, keep_alive_s=300) as faas:
        yield faas, key


@pytest.fixture
def go(redis_server: Any, pool: tuple[LocalFaaS, bytes]) -> Callable[..., Any]:
    faas, key = pool

    def call(wf: Workflow, plan: Any = None, **kw: Any) -> Any:
        kw.setdefault("timeout_s", 60.0)
        kw.setdefault("config", CONFIG)
        return run_workflow(wf, plan, redis_server.url, hmac_key=key, invoker=faas, **kw)

    return call


def run_keys(client: redis.Redis, run_id: str) -> list[bytes]:
    return list(client.scan_iter(match=f"fp:{run_id}:*", count=1000))


def worker_pids(faas: LocalFaaS) -> list[int]:
    """The emulator's live worker processes (only this test's own)."""
    return [p.proc.pid for p in list(faas._procs) if p.proc.returncode is None]


# -- run ids ------------------------------------------------------------------------------
def test_reused_run_id_is_refused_then_replaced(go: Callable[..., Any],
                                                redis_server: Any) -> None:
    rid = "reused-id"
    first = go(Workflow([inc(1, task_id="a")]), run_id=rid, keep_data=True)
    assert first.result == 2
    start = time.monotonic()
    with pytest.raises(RunIdInUseError, match=r"run reused-id: this run id is in use.*replace"):
        go(Workflow([inc(10, task_id="a")]), run_id=rid)
    assert time.monotonic() - start < 5
    # The refused run touched nothing of the kept one.
    assert redis_server.client().exists(f"fp:{rid}:d:out:a")
    second = go(Workflow([inc(10, task_id="a")]), run_id=rid, replace=True)
    assert second.result == 11
    assert run_keys(redis_server.client(), rid) == []


def test_left_over_output_of_an_earlier_instance_never_authenticates(
        go: Callable[..., Any], redis_server: Any) -> None:
    """Even planted under the new run's key, the old instance's output is rejected."""
    rid = "left-over"
    go(Workflow([inc(1, task_id="a")]), run_id=rid, keep_data=True)
    client = redis_server.client()
    old = client.get(f"fp:{rid}:d:out:a")
    # The planted value is there before the sink's own: it stays (the first stored output
    # is final), and authenticating it fails, where it used to be returned as the result.
    plant = threading.Timer(0.3, lambda: client.set(f"fp:{rid}:d:out:a", old))
    plant.start()
    try:
        with pytest.raises(PayloadAuthError, match=rf"payload '{rid}/[0-9a-f]+/out:a'"):
            go(Workflow([napping(5, 1.0, task_id="a")]), run_id=rid, replace=True)
    finally:
        plant.cancel()
    assert run_keys(client, rid) == []


# -- credentials and a lost server ----------------------------------------------------------
@pytest.mark.parametrize("password", ["", "wrong"])
def test_authentication_refused_fails_fast(redis_server: Any, password: str) -> None:
    url = f"redis://:{password}@127.0.0.1:{redis_server.port}/0" if password else \
        f"redis://127.0.0.1:{redis_server.port}/0"
    start = time.monotonic()
    with pytest.raises(RedisAuthError, match="authentication required or refused"):
        run_workflow(Workflow([inc(1)]), redis=url, timeout_s=10)
    assert time.monotonic() - start < 10


def test_cli_run_without_password_exits_fast(redis_server: Any, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    start = time.monotonic()
    target = "faasplan.workloads:tree_reduction"
    proc = subprocess.run([sys.executable, "-m", "faasplan", "run", target, "--planner",
                           "wukong", "--redis", url, "--timeout", "10", "--no-files"],
                          capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    # Start-up and planning come first (tens of seconds on a loaded host, never the
    # minutes it took when every wait retried the refused authentication).
    assert time.monotonic() - start < 60
    assert proc.returncode != 0
    assert "authentication required" in proc.stderr


def test_dead_redis_is_reported_within_seconds(server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    wf = Workflow([napping(napping(1, 1.0, task_id="a"), 30.0, task_id="b")])
    threading.Timer(2.5, server.kill).start()
    start = time.monotonic()
    with pytest.raises(RedisUnavailableError, match="unreachable"):
        run_workflow(wf, redis=server.url, timeout_s=120, config=CONFIG)
    assert time.monotonic() - start < 40


def test_restart_without_persistence_is_reported(server_factory: Callable[..., Server]
                                                 ) -> None:
    server = server_factory()

    def restart() -> None:
        server.kill()
        time.sleep(0.5)
        server.start()

    wf = Workflow([napping(napping(1, 1.0, task_id="a"), 4.0, task_id="b")])
    threading.Timer(2.0, restart).start()
    start = time.monotonic()
    with pytest.raises(RunStateLostError, match="no longer holds this run's state"):
        run_workflow(wf, redis=server.url, timeout_s=120, config=CONFIG)
    assert time.monotonic() - start < 40


def test_short_outage_with_persistence_recovers(server_factory: Callable[..., Server]) -> None:
    server = server_factory("--appendonly", "yes", "--appendfsync", "always")

    def restart() -> None:
        server.kill()
        time.sleep(1.5)
        server.start()

    wf = Workflow([napping(napping(1, 0.5, task_id="a"), 3.0, task_id="b")])
    threading.Timer(1.5, restart).start()
    result = run_workflow(wf, redis=server.url, timeout_s=120, max_retries=3,
                          config=RuntimeConfig(lease_ms=1000, drain_s=2.0, outage_s=15.0))
    assert result.result == 3
    assert run_keys(server.client(), result.run_id) == []


# -- task code ----------------------------------------------------------------------------
@pytest.mark.parametrize(("how", "exc_type"), [("exit", "SystemExit"),
                                               ("interrupt", "KeyboardInterrupt")])
def test_task_ending_the_interpreter_is_a_task_failure(go: Callable[..., Any], how: str,
                                                       exc_type: str) -> None:
    with pytest.raises(RemoteTaskError) as info:
        go(Workflow([exits(1, how, task_id="quitter")]), timeout_s=30)
    assert info.value.task_id == "quitter" and info.value.exc_type == exc_type
    assert "in exits" in info.value.remote_traceback


def test_gil_held_by_c_code_keeps_the_lease(go: Callable[..., Any]) -> None:
    # About 3 s in one regular-expression match (which never releases the GIL) against
    # a 1 s lease: the heartbeat process keeps it, so nothing is retried.
    # The match doubles its time with every extra character: size it on this machine so
    # that it holds the GIL for about 3 s, three leases, however fast the machine is.
    t0 = time.perf_counter()
    re.match(r"(a+)+$", "a" * 20 + "b")
    base = max(time.perf_counter() - t0, 1e-4)
    n = 20 + max(0, math.ceil(math.log2(3.0 / base)))
    result = go(Workflow([regex_bomb(n, task_id="bomb")]), max_retries=0)
    assert result.result == 0 and result.retries == 0
    held_ms = float(result.trace.tasks["exec_ms"].iloc[0])
    assert held_ms > 1500.0, f"the match took only {held_ms:.0f} ms (n={n})"


def test_output_above_the_servers_limit_fails_at_once(server_factory: Callable[..., Server]
                                                      ) -> None:
    server = server_factory()
    server.client().config_set("proto-max-bulk-len", "1mb")
    start = time.monotonic()
    with pytest.raises(RemoteTaskError, match=r"OutputTooLargeError.*2,097,[0-9]{3} bytes sealed"
                                              r".*proto-max-bulk-len of 1,048,576 bytes"):
        run_workflow(Workflow([blob(2 * 1024 * 1024, task_id="big")]),
                     redis=server.url, timeout_s=60, config=CONFIG)
    assert time.monotonic() - start < 20
    assert list(server.client().scan_iter(match="fp:*", count=1000)) == []


def test_maxmemory_is_a_clear_error_and_leaves_no_key(server_factory: Callable[..., Server]
                                                      ) -> None:
    server = server_factory("--maxmemory", "12mb", "--maxmemory-policy", "noeviction")
    wf = Workflow([blob(3 * 1024 * 1024 + i, task_id=f"part{i}") for i in range(6)])
    start = time.monotonic()
    with pytest.raises(RedisOutOfMemoryError, match=r"out of memory.*maxmemory"):
        run_workflow(wf, redis=server.url, timeout_s=60, config=CONFIG)
    assert time.monotonic() - start < 30
    assert list(server.client().scan_iter(match="fp:*", count=1000)) == []


# -- retries of non-deterministic tasks, stale workers ----------------------------------------
def test_retried_non_deterministic_task_has_one_version(go: Callable[..., Any],
                                                        tmp_path: Path) -> None:
    """A diamond: w0 runs the random root and one branch (killed once), w1 the other."""
    root = noisy(1, task_id="root")
    left = echo(root, str(tmp_path / "crashed"), task_id="left")
    right = echo(root, task_id="right")
    wf = Workflow([agree(left, right, task_id="same")])
    plan = {"root": Placement("w0", 1024), "left": Placement("w0", 1024),
            "right": Placement("w1", 1024), "same": Placement("w1", 1024)}
    result = go(wf, plan)
    assert (tmp_path / "crashed").exists() and result.retries >= 1
    assert result.result is True


def test_worker_paused_past_its_lease_is_fenced(go: Callable[..., Any], pool: Any,
                                                tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    wf = Workflow([inc(pid_file(1, str(marker), 0.8, task_id="slow"), task_id="after")])

    def pause() -> None:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGSTOP)
        time.sleep(3.0)  # three leases: taken for dead, retried elsewhere
        os.kill(pid, signal.SIGCONT)

    pauser = threading.Thread(target=pause)
    pauser.start()
    result = go(wf, {"slow": Placement("w0", 1024), "after": Placement("w0", 1024)},
                max_retries=2)
    pauser.join()
    assert result.result == 3 and result.retries >= 1


@pytest.mark.parametrize("planner", [None, "wukong", "uniform-opt", "heft"])
def test_random_kills_and_stops_under_planners(go: Callable[..., Any], pool: Any,
                                               planner: str | None) -> None:
    wf = REGISTRY["tree_reduction"](leaves=8, leaf_size=4)
    expected = run_local(wf)
    plan = None if planner is None else faasplan.plan(wf, planner)
    rng = np.random.default_rng(sum(map(ord, planner or "flexible")))
    faas = pool[0]
    faults: list[str] = []

    def inject() -> None:
        time.sleep(float(rng.uniform(0.0, 0.3)))
        pids = worker_pids(faas)
        if not pids:
            return
        pid = int(rng.choice(pids))
        if rng.random() < 0.5:
            os.kill(pid, signal.SIGKILL)
            faults.append("kill")
        else:
            os.kill(pid, signal.SIGSTOP)
            faults.append("stop")
            time.sleep(2.5)
            os.kill(pid, signal.SIGCONT)

    injector = threading.Thread(target=inject)
    injector.start()
    try:
        result = go(wf, plan, max_retries=3)
    except RunError as exc:  # a clear error is acceptable, a wrong result never
        assert not isinstance(exc, RunTimeoutError), exc
    else:
        assert np.array_equal(result.result, expected)
    finally:
        injector.join()


# -- tampering ------------------------------------------------------------------------------
def test_tampered_control_key_ends_in_a_bounded_error(go: Callable[..., Any],
                                                      redis_server: Any) -> None:
    rid = "tamper-deps"
    client = redis_server.client()
    a, b = napping(1, 0.3, task_id="a"), napping(2, 0.3, task_id="b")
    wf = Workflow([agree(a, b, task_id="join")])
    def forge() -> None:
        # Once the run holds its id (an earlier key would only get the id refused).
        deadline = time.monotonic() + 10
        while not client.exists(f"fp:{rid}:manifest") and time.monotonic() < deadline:
            time.sleep(0.005)
        client.sadd(f"fp:{rid}:deps:join", "forged")

    threading.Thread(target=forge).start()
    start = time.monotonic()
    # Fan-in entries carry a MAC: a forged one, written before the set completes, is found
    # by the worker whose entry meets it (PayloadAuthError naming the join's set); written
    # after, it changes nothing. Either the right result or that error, in bounds.
    try:
        result = go(wf, run_id=rid, timeout_s=6)
    except PayloadAuthError as exc:
        assert "deps:join" in str(exc)
    else:
        assert result.result is run_local(wf)
    assert time.monotonic() - start < 20
    assert run_keys(client, rid) == []


# -- keys: failed runs and the last-resort expiry ------------------------------------------
def test_failed_streamed_run_leaves_no_key(go: Callable[..., Any], redis_server: Any) -> None:
    from faasplan.worker import Opt

    rid = "failed-stream"
    wf = Workflow([exits(size_of(blob(600_000, task_id="big"), task_id="n"), "exit",
                         task_id="bad")])
    plan = {"big": Placement("w0", 1024, frozenset({Opt.STREAM})),
            "n": Placement("w1", 1024), "bad": Placement("w1", 1024)}
    with pytest.raises(RemoteTaskError):
        go(wf, plan, run_id=rid, config=RuntimeConfig(lease_ms=1000, drain_s=2.0,
                                                      stream_chunk_bytes=65536))
    time.sleep(1.0)  # late writes of the workers would show up now
    assert run_keys(redis_server.client(), rid) == []


def test_every_kept_key_expires(go: Callable[..., Any], redis_server: Any) -> None:
    rid = "kept-ttl"
    wf = REGISTRY["tree_reduction"](leaves=4, leaf_size=4)
    go(wf, run_id=rid, keep_data=True,
       config=RuntimeConfig(lease_ms=1000, drain_s=2.0, key_ttl_s=3600))
    client = redis_server.client()
    keys = run_keys(client, rid)
    assert keys
    ttls = {k: client.pttl(k) for k in keys}
    assert all(0 < t <= 3600_000 for t in ttls.values()), ttls
    client.delete(*keys)


# -- a client that dies ----------------------------------------------------------------------
CLIENT_SCRIPT = textwrap.dedent("""
    import time
    from faasplan.runtime import run
    from faasplan.workflow import Workflow, task

    @task
    def napping(x, seconds):
        time.sleep(seconds)
        return x + 1

    run(Workflow([napping(napping(1, 30.0, task_id="a"), 1.0, task_id="b")]), timeout_s=60)
""")


def test_client_death_leaves_no_process(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT],
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    descendants: list[psutil.Process] = []
    while time.monotonic() < deadline:
        descendants = me.children(recursive=True)
        names = " ".join(_cmdline(p) for p in descendants)
        if "redis-server" in names and "worker" in names:
            break
        time.sleep(0.1)
    assert descendants, "the client started no server and no worker"
    time.sleep(1.0)
    descendants = me.children(recursive=True)
    proc.kill()
    proc.wait(10)
    _, alive = psutil.wait_procs(descendants, timeout=20)
    # A zombie has ended and holds nothing; reaping it is its new parent's job (here the
    # container's init, which may not reap at all).
    alive = [p for p in alive if _status(p) != psutil.STATUS_ZOMBIE]
    assert alive == [], [_cmdline(p) for p in alive]


def _cmdline(p: psutil.Process) -> str:
    """The command line of ``p``, or "" once it has ended (a zombie has none to read)."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _status(p: psutil.Process) -> str:
    try:
        return str(p.status())
    except psutil.NoSuchProcess:
        return psutil.STATUS_DEAD
