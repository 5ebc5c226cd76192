"""Fault trials against a real redis-server and real worker processes.

Each trial runs a small workflow on Redis and injects one fault, chosen at random (seeded):
a worker SIGKILLed or SIGSTOPped at a random moment under a random planner, a retried
non-deterministic task, a reused run id (refused, then replaced), a wrong password,
tampered data or control keys, Redis killed mid-run, ``maxmemory`` reached, an output above
the server's ``proto-max-bulk-len``. It counts how each trial ended:

* ``correct``: the result of ``run_local``;
* ``clear error``: a :class:`~faasplan.runtime.RunError` other than a timeout, in bounds;
* ``wrong result`` (must be 0) and ``hang`` (a timeout, or over the trial's wall bound;
  must be 0);
* leaked keys (a run's keys left on the server), processes (descendants left once
  everything is closed) and files (``faasplan-redis-*`` directories left): must be 0.

    python benchmarks/bench_faults.py --trials 120 --seed 0
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

import faasplan
from faasplan.runtime import LocalFaaS, RuntimeConfig, new_key, run
from faasplan.runtime.embedded import find_redis_server
from faasplan.runtime.errors import RunError, RunTimeoutError
from faasplan.worker import Placement
from faasplan.workflow import Workflow, task
from faasplan.workflow.local import run_local
from faasplan.workloads import tree_reduction

CONFIG = RuntimeConfig(lease_ms=1000, drain_s=1.0, outage_s=5.0)
WALL_BOUND_S = 60.0
PLANNERS = (None, "wukong", "uniform-opt", "heft")


@task
def noisy(tag: int) -> bytes:
    return os.urandom(16) + bytes([tag])


@task
def echo(x: Any, marker: str = "") -> Any:
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
def blob(nbytes: int) -> bytes:
    return b"x" * nbytes


class Server:
    """A private redis-server (password, loopback, no persistence) with extra settings."""

    def __init__(self, *extra: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="bench-faults-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.password = secrets.token_hex(12)
        self.proc = subprocess.Popen(
            [find_redis_server().path, "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--dir", self.directory, "--save", "",
             "--appendonly", "no", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for path in sorted(Path(self.directory).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        os.rmdir(self.directory)


class Bench:
    """The shared server and emulator, and the trial kinds.

    Workflows are built with ``detect=False``: requirement detection parses module source,
    which failed here once under CPython 3.11.7 with "AST constructor recursion depth
    mismatch" while the emulator's thread and trial threads were running.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.server = Server()
        self.key = new_key()
        self.faas = LocalFaaS(self.server.url, self.key, max_running=4, keep_alive_s=300)
        self.faas.start()
        self.wf = tree_reduction(leaves=8, leaf_size=4)
        self.expected = run_local(self.wf)
        self.plans = {p: (None if p is None else faasplan.plan(self.wf, p)) for p in PLANNERS}
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-faults-markers-"))
        self.run_ids: list[str] = []

    def go(self, wf: Workflow, plan: Any = None, **kw: Any) -> Any:
        rid = kw.setdefault("run_id", f"bench-{secrets.token_hex(4)}")
        self.run_ids.append(rid)
        kw.setdefault("timeout_s", 45.0)
        kw.setdefault("config", CONFIG)
        return run(wf, plan, self.server.url, hmac_key=self.key, invoker=self.faas, **kw)

    # -- trial kinds: each returns (outcome value, expected value) or raises ---------------
    def worker_signal(self, sig: signal.Signals) -> tuple[Any, Any]:
        planner = PLANNERS[int(self.rng.integers(len(PLANNERS)))]
        delay = float(self.rng.uniform(0.0, 0.4))

        def inject() -> None:
            time.sleep(delay)
            pids = [p.proc.pid for p in list(self.faas._procs) if p.proc.returncode is None]
            if not pids:
                return
            pid = int(self.rng.choice(pids))
            with _no_such_process():
                os.kill(pid, sig)
            if sig == signal.SIGSTOP:
                time.sleep(2.5)
                with _no_such_process():
                    os.kill(pid, signal.SIGCONT)

        injector = threading.Thread(target=inject)
        injector.start()
        try:
            return self.go(self.wf, self.plans[planner], max_retries=3).result, self.expected
        finally:
            injector.join()

    def kill_worker(self) -> tuple[Any, Any]:
        return self.worker_signal(signal.SIGKILL)

    def stop_worker(self) -> tuple[Any, Any]:
        return self.worker_signal(signal.SIGSTOP)

    def non_deterministic(self) -> tuple[Any, Any]:
        marker = self.tmp / secrets.token_hex(4)
        root = noisy(1, task_id="root")
        wf = Workflow([agree(echo(root, str(marker), task_id="left"),
                             echo(root, task_id="right"), task_id="same")], detect=False)
        plan = {"root": Placement("w0", 1024), "left": Placement("w0", 1024),
                "right": Placement("w1", 1024), "same": Placement("w1", 1024)}
        return self.go(wf, plan).result, True

    def reused_id(self) -> tuple[Any, Any]:
        rid = f"bench-reused-{secrets.token_hex(3)}"
        self.go(Workflow([napping(1, 0.0, task_id="a")], detect=False), run_id=rid,
                keep_data=True)
        if self.rng.random() < 0.5:
            self.go(Workflow([napping(10, 0.0, task_id="a")], detect=False), run_id=rid)  # refused
            raise AssertionError("a run id in use was accepted")
        return self.go(Workflow([napping(10, 0.0, task_id="a")], detect=False), run_id=rid,
                       replace=True).result, 11

    def wrong_password(self) -> tuple[Any, Any]:
        url = f"redis://:{'x' * 8}@127.0.0.1:{self.server.port}/0"
        if self.rng.random() < 0.5:
            url = f"redis://127.0.0.1:{self.server.port}/0"
        return run(self.wf, redis=url, timeout_s=10).result, self.expected

    def tamper_data(self) -> tuple[Any, Any]:
        rid = f"bench-tamper-{secrets.token_hex(3)}"
        client = self.server.client()
        victim = self.wf.topological_order[int(self.rng.integers(len(self.wf)))]
        key = f"fp:{rid}:d:out:{victim}"

        def flip() -> None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                raw: Any = client.get(key)
                data = bytes(raw or b"")
                if data:
                    client.set(key, data[:-1] + bytes([data[-1] ^ 0xFF]), xx=True)
                    return
                time.sleep(0.002)

        flipper = threading.Thread(target=flip)
        flipper.start()
        try:
            plan = self.plans[PLANNERS[int(self.rng.integers(len(PLANNERS)))]]
            return self.go(self.wf, plan, run_id=rid).result, self.expected
        finally:
            flipper.join()

    def tamper_control(self) -> tuple[Any, Any]:
        rid = f"bench-control-{secrets.token_hex(3)}"
        client = self.server.client()
        a, b = napping(1, 0.3, task_id="a"), napping(2, 0.3, task_id="b")
        wf = Workflow([agree(a, b, task_id="join")], detect=False)
        target = (f"fp:{rid}:deps:join", f"fp:{rid}:inv")[int(self.rng.integers(2))]

        def forge() -> None:
            # Once the run holds its id (an earlier key would only get the id refused).
            deadline = time.monotonic() + 10
            while not client.exists(f"fp:{rid}:manifest") and time.monotonic() < deadline:
                time.sleep(0.005)
            if target.endswith(":inv"):
                client.hset(target, "t:join", "done")
            else:
                client.sadd(target, "forged")

        forger = threading.Thread(target=forge)
        forger.start()
        try:
            return self.go(wf, run_id=rid, timeout_s=8).result, False
        finally:
            forger.join()

    def kill_redis(self) -> tuple[Any, Any]:
        server = Server()
        try:
            wf = Workflow([napping(napping(1, 0.5, task_id="a"), 20.0, task_id="b")],
                          detect=False)
            threading.Timer(float(self.rng.uniform(1.0, 2.0)), server.kill).start()
            return run(wf, redis=server.url, timeout_s=45, config=CONFIG).result, 3
        finally:
            time.sleep(2.5)  # the timer has fired
            if server.proc.poll() is None:
                server.kill()

    def max_memory(self) -> tuple[Any, Any]:
        server = Server("--maxmemory", "12mb", "--maxmemory-policy", "noeviction")
        try:
            wf = Workflow([blob(3 * 2**20 + i, task_id=f"part{i}") for i in range(6)],
                          detect=False)
            try:
                expected = [b"x" * (3 * 2**20 + i) for i in range(6)]
                return run(wf, redis=server.url, timeout_s=45, config=CONFIG).result, expected
            finally:
                left = list(server.client().scan_iter(match="fp:*", count=1000))
                if left:
                    raise Leak(f"{len(left)} keys left under maxmemory")
        finally:
            server.kill()

    def too_large(self) -> tuple[Any, Any]:
        self.server.client().config_set("proto-max-bulk-len", "1mb")
        try:
            wf = Workflow([blob(2 * 2**20, task_id="big")], detect=False)
            return self.go(wf).result, b"x" * 2**21
        finally:
            self.server.client().config_set("proto-max-bulk-len", "512mb")

    def leaked_keys(self) -> int:
        client = self.server.client()
        return sum(1 for rid in self.run_ids
                   for _ in client.scan_iter(match=f"fp:{rid}:*", count=1000))

    def close(self) -> None:
        client = self.server.client()
        for rid in self.run_ids:  # kept on purpose by reused-id trials
            if rid.startswith("bench-reused-"):
                for key in client.scan_iter(match=f"fp:{rid}:*", count=1000):
                    client.delete(key)
        self.faas.close()
        self.server.kill()
        for path in self.tmp.iterdir():
            path.unlink()
        self.tmp.rmdir()


class Leak(Exception):
    """Keys, processes or files left behind by one trial."""


class _no_such_process:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is ProcessLookupError


KINDS: dict[str, tuple[float, Callable[[Bench], tuple[Any, Any]]]] = {
    "worker SIGKILL": (0.22, Bench.kill_worker),
    "worker SIGSTOP": (0.18, Bench.stop_worker),
    "non-deterministic retry": (0.10, Bench.non_deterministic),
    "reused run id": (0.08, Bench.reused_id),
    "password / URL": (0.06, Bench.wrong_password),
    "tampered data key": (0.10, Bench.tamper_data),
    "tampered control key": (0.08, Bench.tamper_control),
    "Redis killed": (0.06, Bench.kill_redis),
    "maxmemory": (0.06, Bench.max_memory),
    "output above limit": (0.06, Bench.too_large),
}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b) and type(a) is type(b)


def trial(bench: Bench, kind: str) -> str:
    start = time.monotonic()
    keys_before = bench.leaked_keys()
    try:
        value, expected = KINDS[kind][1](bench)
        outcome = "correct" if same(value, expected) else "wrong result"
    except RunTimeoutError:
        outcome = "hang"
    except RunError:
        outcome = "clear error"
    except Leak:
        outcome = "leaked keys"
    if outcome != "hang" and time.monotonic() - start > WALL_BOUND_S:
        outcome = "hang"
    time.sleep(0.3)  # late writes of stopped workers would show up now
    kept = sum(1 for rid in bench.run_ids[-1:] if rid.startswith("bench-reused-"))
    if not kept and bench.leaked_keys() > keys_before:
        outcome = "leaked keys"
    return outcome


def redis_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "faasplan-redis-*")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dirs_before = redis_dirs()
    bench = Bench(args.seed)
    names = list(KINDS)
    weights = np.array([KINDS[k][0] for k in names])
    counts: Counter[str] = Counter()
    per_kind: dict[str, Counter[str]] = {k: Counter() for k in names}
    start = time.monotonic()
    try:
        for i in range(args.trials):
            kind = names[int(bench.rng.choice(len(names), p=weights / weights.sum()))]
            outcome = trial(bench, kind)
            counts[outcome] += 1
            per_kind[kind][outcome] += 1
            if outcome in ("wrong result", "hang", "leaked keys"):
                print(f"trial {i} ({kind}): {outcome}", flush=True)
    finally:
        bench.close()
    time.sleep(3.0)
    procs = [p for p in psutil.Process().children(recursive=True) if p.is_running()
             and p.status() != psutil.STATUS_ZOMBIE]
    files = redis_dirs() - dirs_before
    elapsed = time.monotonic() - start
    print(f"fault trials: {args.trials} (seed {args.seed}) in {elapsed:.0f} s")
    width = max(map(len, names))
    cols = ("correct", "clear error", "wrong result", "hang", "leaked keys")
    print(f"  {'kind':<{width}}  " + "  ".join(f"{c:>12}" for c in cols))
    for k in names:
        if sum(per_kind[k].values()):
            print(f"  {k:<{width}}  " + "  ".join(f"{per_kind[k][c]:>12}" for c in cols))
    print(f"  {'total':<{width}}  " + "  ".join(f"{counts[c]:>12}" for c in cols))
    print(f"  leaked processes: {len(procs)}  leaked files: {len(files)}")
    bad = counts["wrong result"] + counts["hang"] + counts["leaked keys"] + len(procs) + len(files)
    print("result: " + ("PASS" if bad == 0 else "FAIL") + f" ({bad} bad outcomes)")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

