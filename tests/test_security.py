"""Secrets, trust and hostile input in the Redis runtime, against a real redis-server.

Each test plays one attack of issue 14 with real processes: run ids that are glob
patterns, secrets read from other processes' command lines (``/proc/*/cmdline``, what
``ps`` shows every user), host names that look local, weak keys and readable key files,
standalone workers that must get the key without a command line, and a client killed
with SIGKILL that must not leave its private server (or its password file) behind.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import redis

import faasplan.runtime.client as client_module
import faasplan.runtime.keys as keys_module
import faasplan.runtime.security as security_module
from faasplan.runtime import EmbeddedRedis, InsecureRedisError, LocalFaaS, RuntimeConfig, run
from faasplan.runtime.client import _unlink_matching
from faasplan.runtime.keys import RunKeys, check_run_id, check_task_id, glob_escape
from faasplan.runtime.security import (
    KEY_ENV,
    STRICT_ENV,
    URL_ENV,
    InsecureKeyError,
    SecurityWarning,
    check_redis_url,
    is_loopback_host,
    key_weaknesses,
    new_key,
    read_key_file,
    write_key_file,
)
from faasplan.workflow import Workflow, task

pytest_plugins = ("conftest_redis",)

# Worker processes cannot import this test module: ship its task functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CONFIG = RuntimeConfig(lease_ms=1000, drain_s=3.0)
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "cmdline").exists(),
                                reason="reads other processes' command lines from /proc")


@task
def inc(x: int) -> int:
    return x + 1


@task
def nap(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


@task
def getenv(name: str) -> str | None:
    return os.environ.get(name)


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

    def call(wf: Workflow, **kw: Any) -> Any:
        kw.setdefault("timeout_s", 60.0)
        kw.setdefault("config", CONFIG)
        return run(wf, None, redis_server.url, hmac_key=key, invoker=faas, **kw)

    return call


def run_keys(client: redis.Redis, run_id: str) -> set[bytes]:
    return set(client.scan_iter(match=RunKeys(run_id).pattern, count=1000))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat_file = PROC / str(pid) / "stat"
    # A zombie has exited; only its parent's wait() is missing.
    return not (stat_file.exists() and stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def wait_until(condition: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from ``/proc/*/stat``)."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class CommandLines:
    """Every command line of every process, read from ``/proc`` every few milliseconds.

    Use as a context manager around a run; :attr:`seen` then holds each distinct
    command line (arguments joined by NUL bytes), as any user's ``ps`` shows them.
    """

    def __init__(self, period_s: float = 0.005) -> None:
        self.period_s = period_s
        self.seen: set[bytes] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir(PROC):
                if entry.name.isdigit():
                    try:
                        with open(f"{entry.path}/cmdline", "rb") as f:
                            self.seen.add(f.read())
                    except OSError:
                        pass  # the process ended meanwhile
            self.scans += 1
            self._stop.wait(self.period_s)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def containing(self, needle: bytes) -> list[bytes]:
        return sorted(c for c in self.seen if needle in c)


# -- item 2: run and task ids, key patterns --------------------------------------------------
HOSTILE_RUN_IDS = ["*", "bystander*", "?ystander-1", "[b]*", "a b", "a\nb", "run\r", "x:y",
                   "pool", "runs", "", "-leading-dash", "a" * 129, "é"]


def test_hostile_run_ids_are_refused_and_touch_no_other_run(
        go: Callable[..., Any], redis_server: Any) -> None:
    client = redis_server.client()
    go(Workflow(inc(inc(1))), run_id="bystander-1", keep_data=True)
    before = run_keys(client, "bystander-1")
    assert before, "the bystander run kept no keys: nothing would be at risk"
    try:
        for run_id in HOSTILE_RUN_IDS:
            with pytest.raises(ValueError, match=r"run id .* (is not allowed|is reserved)"):
                go(Workflow(inc(1)), run_id=run_id)
        assert run_keys(client, "bystander-1") == before
    finally:
        client.delete(*before)


def test_a_run_whose_id_prefixes_another_cleans_up_only_its_own_keys(
        go: Callable[..., Any], redis_server: Any) -> None:
    client = redis_server.client()
    go(Workflow(inc(inc(5))), run_id="keep-1", keep_data=True)
    kept = run_keys(client, "keep-1")
    client.set("fp:keep-foreign", b"not a run key")
    try:
        result = go(Workflow([inc(1), inc(2)]), run_id="keep")
        assert result.result == [2, 3]
        assert run_keys(client, "keep") == set()
        assert run_keys(client, "keep-1") == kept
        assert client.get("fp:keep-foreign") == b"not a run key"
    finally:
        client.delete(*kept, "fp:keep-foreign")


async def _clean(url: str, run_ids: list[str]) -> None:
    client = client_module.connect(url)
    try:
        for run_id in run_ids:
            await _unlink_matching(client, RunKeys(run_id).pattern)
    finally:
        await client.aclose()


def test_cleanup_patterns_match_glob_characters_literally(redis_server: Any) -> None:
    client = redis_server.client()
    names = ["fp:a*:x", "fp:ab:x", "fp:a[b]:y", "fp:ab]:y", "fp:a?:z", "fp:aa:z", "fp:a\\:w"]
    client.mset({n: b"1" for n in names})
    try:
        asyncio.run(_clean(redis_server.url, ["a*", "a[b]", "a?", "a\\"]))
        left = sorted(k.decode() for k in client.keys("fp:a*"))
        assert left == ["fp:aa:z", "fp:ab:x", "fp:ab]:y"]
    finally:
        client.delete(*names)


@pytest.mark.parametrize("task_id", ["a\nb", "two words", "tab\there", "x*", "[0]", "a?",
                                     "back\\slash", "bell\x07", "t" * 257])
def test_task_ids_that_cannot_name_keys_are_refused_at_once(
        go: Callable[..., Any], redis_server: Any, task_id: str) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"task id .* rename the task"):
        go(Workflow(inc(inc(1, task_id=task_id))), run_id="bad-task-id")
    assert time.monotonic() - start < 5.0  # refused before anything waits
    assert run_keys(redis_server.client(), "bad-task-id") == set()


def test_id_rules() -> None:
    for good in ("r", "20261202-013000-ab12cd34", "nightly_3.1", "A" * 128):
        assert check_run_id(good) == good
    for good in ("mProject_ID0000001", "inc-0", "<lambda>-3", "stage:2", "t" * 256):
        assert check_task_id(good) == good
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"
    assert RunKeys("a*").pattern == "fp:a\\*:*"
    assert RunKeys("a*").pubsub_pattern == "fp:a\\*:ps:*"
    with pytest.raises(TypeError, match="run id must be a string"):
        check_run_id(3)


# -- item 7: no secret on a command line; the password file and directory go -------------------
@needs_proc
def test_no_secret_on_any_command_line_during_a_default_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[EmbeddedRedis] = []

    class Recorded(EmbeddedRedis):
        def start(self) -> EmbeddedRedis:
            started.append(self)
            return super().start()

    monkeypatch.setattr(client_module, "EmbeddedRedis", Recorded)
    key = new_key()
    wf = Workflow([nap(i, 0.5) for i in range(4)])
    with CommandLines() as ps:
        result = run(wf, hmac_key=key, timeout_s=120, config=CONFIG)
    assert result.result == [0, 1, 2, 3]
    (server,) = started
    assert server.directory is None  # stopped, directory deleted
    # The scan saw the processes that hold the secrets, or it proves nothing.
    assert ps.containing(f"redis-server 127.0.0.1:{server.port}".encode()), "server not seen"
    assert ps.containing(b"faasplan\0worker\0--emulated"), "no worker process seen"
    for secret in (server.password.encode(), key.hex().encode(), key):
        assert ps.containing(secret) == [], "a secret is visible to every user"


def test_the_password_file_lives_only_until_the_server_answers() -> None:
    with EmbeddedRedis() as server:
        folder = server.directory
        assert folder is not None
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert sorted(p.name for p in folder.iterdir()) == ["redis.log", "redis.sock"]
        assert redis.Redis.from_url(server.url).ping()
    assert not folder.exists()


def test_the_directory_goes_when_the_server_cannot_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'v=9.9.9'\nexit 3\n")
    fake.chmod(0o700)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(RuntimeError, match="did not start"):
        EmbeddedRedis(str(fake), startup_timeout_s=2.0).start()
    assert list(scratch.iterdir()) == []


# -- item 8: locality from the parsed address ----------------------------------------------
@pytest.mark.parametrize("url", [
    "redis://127.attacker.example:6379/0", "redis://127.0.0.1.nip.io:6379/0",
    "redis://localhost.attacker.example:6379", "redis://0.0.0.0:6379", "redis://10.0.0.1",
    "redis://[::2]:6379", "redis://[::ffff:10.0.0.1]:6379", "rediss://127-0-0-1.example"])
def test_names_that_only_look_local_need_a_password(url: str) -> None:
    with pytest.raises(InsecureRedisError, match="refusing Redis at"):
        check_redis_url(url)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.12.0.9", "[::1]", "::1", "LOCALHOST",
                                  "::ffff:127.0.0.1", ""])
def test_loopback_addresses_are_local(host: str) -> None:
    assert is_loopback_host(host)


def test_a_lookalike_host_is_refused_before_any_connection(redis_server: Any) -> None:
    lookalike = f"redis://127.attacker.example:{redis_server.port}/0"
    with pytest.raises(InsecureRedisError, match=r"127\.attacker\.example"):
        run(Workflow(inc(1)), None, lookalike, timeout_s=10)
    proc = subprocess.run([sys.executable, "-m", "faasplan", "worker"], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, **{URL_ENV: lookalike}))
    assert proc.returncode == 2 and "127.attacker.example" in proc.stderr
    # The real loopback name reaches the same server.
    local = f"redis://:{redis_server.password}@localhost:{redis_server.port}/0"
    assert run(Workflow(inc(1)), None, local, timeout_s=60, config=CONFIG).result == 2


# -- item 9: weak keys and readable key files ----------------------------------------------
@pytest.mark.parametrize(("key", "why"), [
    (bytes(32), "all 32 bytes are 0x00"), (b"\xff" * 16, "all 16 bytes are 0xff"),
    (bytes(range(32)), "byte-to-byte steps repeat"), (b"\x01\x02" * 16, "2-byte pattern"),
    (bytes(31) + b"\x01", "byte values repeat"), (b"correct horse battery staple", "ASCII")])
def test_weak_keys_are_named(key: bytes, why: str) -> None:
    assert any(why in problem for problem in key_weaknesses(key)), key_weaknesses(key)


def test_random_keys_are_never_called_weak() -> None:
    for size in (16, 24, 32, 64):
        flagged = [k for k in (os.urandom(size) for _ in range(3000)) if key_weaknesses(k)]
        assert flagged == [], f"{len(flagged)} random {size}-byte keys flagged"


def test_a_weak_key_warns_and_strict_mode_refuses_it(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_ENV, raising=False)
    wf = Workflow(inc(inc(1)))
    with pytest.warns(SecurityWarning, match="all 32 bytes are 0x00"):
        result = run(wf, None, redis_server.url, hmac_key=bytes(32), timeout_s=60,
                     config=CONFIG)
    assert result.result == 3
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(InsecureKeyError, match=r"all 32 bytes are 0x00.*strict mode"):
        run(wf, None, redis_server.url, hmac_key=bytes(32), run_id="weak-strict")
    assert run_keys(redis_server.client(), "weak-strict") == set()


def test_key_files_are_written_private_and_readable_ones_are_refused_in_strict_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_ENV, raising=False)
    path = tmp_path / "faasplan.key"
    key = write_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key
    with pytest.raises(FileExistsError):
        write_key_file(path)  # never overwritten
    path.chmod(0o644)
    with pytest.warns(SecurityWarning, match=r"mode 0644.*chmod 600"):
        assert read_key_file(path) == key
    with pytest.raises(InsecureKeyError, match=r"mode 0644.*chmod 600"):
        read_key_file(path, strict=True)
    zero = tmp_path / "zero.key"
    zero.write_text(bytes(32).hex())
    zero.chmod(0o600)
    with pytest.raises(InsecureKeyError, match="all 32 bytes are 0x00"):
        read_key_file(zero, strict=True)


def test_the_worker_refuses_a_readable_key_file_in_strict_mode(
        redis_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "faasplan.key"
    write_key_file(path)
    path.chmod(0o640)
    env = dict(os.environ, **{URL_ENV: redis_server.url})
    env.pop(STRICT_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "faasplan", "worker", "--hmac-key-file",
                           str(path), "--strict"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 2, proc.stderr
    assert "mode 0640" in proc.stderr and f"chmod 600 {path}" in proc.stderr


def test_the_worker_refuses_a_weak_key_in_strict_mode(redis_server: Any) -> None:
    env = dict(os.environ, **{URL_ENV: redis_server.url, KEY_ENV: bytes(32).hex()})
    proc = subprocess.run([sys.executable, "-m", "faasplan", "worker", "--strict"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "all 32 bytes are 0x00" in proc.stderr


# -- item 11: a standalone worker gets the key and the URL without a command line ---------------
def _start_worker(key_path: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, **{URL_ENV: url})
    env.pop(KEY_ENV, None)
    env.pop(STRICT_ENV, None)
    return subprocess.Popen([sys.executable, "-m", "faasplan", "worker", "--hmac-key-file",
                             str(key_path), "--memory", "1024", *extra],
                            env=env, stderr=subprocess.PIPE, text=True)


def _stop_worker(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    return err


@needs_proc
def test_a_standalone_worker_serves_a_run_with_a_key_file_and_the_url_in_its_environment(
        redis_server: Any, tmp_path: Path) -> None:
    key_path = tmp_path / "faasplan.key"
    key = write_key_file(key_path)
    worker = _start_worker(key_path, redis_server.url, "--strict")
    cmdline = PROC / str(worker.pid) / "cmdline"
    try:
        # Between fork and exec the command line is still the parent's, or empty.
        assert wait_until(lambda: b"faasplan\0worker" in cmdline.read_bytes(), 30.0) is not None
        shown = cmdline.read_bytes()
        assert str(key_path).encode() in shown
        for secret in (redis_server.password.encode(), key.hex().encode()):
            assert secret not in shown
        wf = Workflow([getenv(URL_ENV), inc(41)])
        result = run(wf, None, redis_server.url, hmac_key=read_key_file(key_path),
                     invoker="external", timeout_s=60, config=CONFIG)
        # Task code does not inherit the URL (password included) from the worker.
        assert result.result == [None, 42]
        assert result.trace.workers["container"].nunique() == 1  # the one standalone worker
    finally:
        _stop_worker(worker)


def test_a_standalone_worker_warns_about_a_readable_key_file_and_still_serves(
        redis_server: Any, tmp_path: Path) -> None:
    key_path = tmp_path / "faasplan.key"
    key = write_key_file(key_path)
    key_path.chmod(0o644)
    worker = _start_worker(key_path, redis_server.url)
    try:
        result = run(Workflow(inc(inc(0))), None, redis_server.url, hmac_key=key,
                     invoker="external", timeout_s=60, config=CONFIG)
        assert result.result == 2
    finally:
        err = _stop_worker(worker)
    assert "SecurityWarning" in err and "chmod 600" in err


# -- item 12: the private server ends with its client --------------------------------------
CLIENT = """
import json, sys, time
import redis
from faasplan.runtime import EmbeddedRedis, RuntimeConfig, run
from faasplan.workflow import Workflow, task

@task
def nap(x, seconds):
    time.sleep(seconds)
    return x

server = EmbeddedRedis().start()
pid = redis.Redis.from_url(server.url).info("server")["process_id"]
print(json.dumps({"dir": str(server.directory), "pid": pid, "url": server.url}), flush=True)
run(Workflow([nap(i, 1.0) for i in range(60)]), None, server.url, timeout_s=300,
    config=RuntimeConfig(max_running=2, max_processes=2))
"""


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_client_leaves_no_server_directory_or_worker(sig: int) -> None:
    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        info = json.loads(client.stdout.readline())
        folder, pid = Path(info["dir"]), int(info["pid"])
        probe = redis.Redis.from_url(info["url"])
        # Kill it mid-run: once a worker holds a lease.
        assert wait_until(lambda: bool(probe.keys("fp:*:lease:*")), 60.0) is not None
        probe.close()
        workers = children(client.pid)
        assert workers, "the client started no worker process"
    finally:
        client.send_signal(sig)
        client.wait(30)
    server_gone = wait_until(lambda: not alive(pid), 5.0)
    assert server_gone is not None, f"redis-server {pid} outlived its client"
    assert wait_until(lambda: not folder.exists(), 5.0) is not None, f"{folder} left behind"
    assert wait_until(lambda: not any(alive(w) for w in workers), 30.0) is not None, \
        f"worker processes {[w for w in workers if alive(w)]} outlived their client"


def parent_of(pid: int) -> int:
    return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_server_ends_with_its_supervisor_killed() -> None:
    server = EmbeddedRedis().start()
    try:
        pid = int(redis.Redis.from_url(server.url).info("server")["process_id"])
        supervisor = parent_of(pid)
        assert supervisor != os.getpid()
        os.kill(supervisor, signal.SIGKILL)
        assert wait_until(lambda: not alive(pid), 5.0) is not None, "the server outlived it"
    finally:
        folder = server.directory
        server.stop()
    assert folder is not None and not folder.exists()


# -- docstring examples -------------------------------------------------------------------
@pytest.mark.parametrize("module", [keys_module, security_module])
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@needs_proc
def test_faasplan_run_shares_its_key_file_with_standalone_workers(
        redis_server: Any, tmp_path: Path) -> None:
    key_path = tmp_path / "faasplan.key"
    env = dict(os.environ)
    for name in (KEY_ENV, STRICT_ENV, URL_ENV):
        env.pop(name, None)
    cli = [sys.executable, "-m", "faasplan"]
    made = subprocess.run([*cli, "keygen", str(key_path)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert made.returncode == 0, made.stderr
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([*cli, "keygen", str(key_path)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    key = read_key_file(key_path)
    base = [*cli, "run", "faasplan.workloads:tree_reduction", "--planner", "wukong",
            "--invoker", "external", "--no-files", "--json", "--timeout", "90"]
    # Without the Redis the workers serve, or without the shared key: a clear error, exit 2.
    for missing, extra in (("--redis", ["--hmac-key-file", str(key_path)]),
                           ("--hmac-key-file", ["--redis", redis_server.url])):
        bad = subprocess.run([*base, *extra], capture_output=True, text=True, env=env,
                             timeout=120)
        assert bad.returncode == 2, bad.stderr
        assert missing in bad.stderr
    # The plan's workers have the platform's default memory (1769 MB).
    worker = _start_worker(key_path, redis_server.url, "--strict", "-v", "--memory", "1769")
    try:
        # The URL from the environment, as the worker has it: no password in ps.
        done = subprocess.run([*base, "--hmac-key-file", str(key_path)], capture_output=True,
                              text=True, env=dict(env, **{URL_ENV: redis_server.url}),
                              timeout=180)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["tasks"] > 1 and out["makespan_ms"] > 0
        assert key.hex() not in done.stdout + done.stderr
    finally:
        err = _stop_worker(worker)
    # The standalone worker ran the invocations: none came from a pool of the client's own.
    assert "invocation" in err.lower(), err[-2000:]


# -- item 10: control state written without the key is detected ----------------------------
@task
def pair(a: int, b: int) -> int:
    return a + b


def test_signer_marks_bind_text_and_context() -> None:
    from faasplan.runtime.errors import PayloadAuthError
    from faasplan.runtime.security import Signer

    s = Signer(new_key())
    marked = s.mark("run/1/deps:c", "a")
    assert s.check_mark("run/1/deps:c", marked) == "a"
    for context, member in (("run/1/deps:d", marked),           # another fan-in
                            ("run/2/deps:c", marked),           # another run instance
                            ("run/1/deps:c", "a"),              # no MAC at all
                            ("run/1/deps:c", "b" + marked[1:]),  # MAC of another task
                            # a changed MAC (its last digit, never left as it was)
                            ("run/1/deps:c", marked[:-1] + ("1" if marked[-1] == "0" else "0"))):
        with pytest.raises(PayloadAuthError):
            s.check_mark(context, member)
    with pytest.raises(PayloadAuthError):
        Signer(new_key()).check_mark("run/1/deps:c", marked)  # another key


def test_a_forged_fan_in_entry_fails_the_run_naming_it(redis_server: Any) -> None:
    from faasplan.runtime.errors import RunError

    fast, slow = inc(1, task_id="fast"), nap(2, 3.0, task_id="slow")
    wf = Workflow(pair(fast, slow, task_id="join"))
    rid = f"forge-{os.getpid()}-{time.monotonic_ns()}"
    deps = RunKeys(rid).deps("join")
    r = redis.Redis.from_url(redis_server.url)
    outcome: dict[str, BaseException | object] = {}

    def go() -> None:
        try:
            outcome["result"] = run(wf, None, redis_server.url, run_id=rid, timeout_s=60,
                                    config=CONFIG)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    try:
        # `fast` has tracked: forge the entry `slow` would write, without the key.
        assert wait_until(lambda: r.scard(deps) == 1, 30.0) is not None
        real = next(iter(r.smembers(deps))).decode()
        assert real.startswith("fast#")
        r.sadd(deps, "slow#" + "0" * 32)
    finally:
        thread.join(90)
    error = outcome.get("error")
    assert isinstance(error, RunError), outcome
    assert "deps:join" in str(error) and "failed authentication" in str(error)
