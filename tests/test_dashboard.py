"""The dashboard: its run model, history comparisons, JSON API, live feed, pages and notebook view.

Everything runs for real: the API over the dashboard's own HTTP server on a free port, the
live view from a real ``redis-server`` (entries written here by the runtime's contract, and
a real :func:`faasplan.run`), pages in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``), the notebook view in a real Jupyter kernel. Screenshots go to
``build/test-artifacts/dashboard/`` (or ``$FAASPLAN_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import faasplan
from faasplan.dashboard import (
    CompareRequest,
    HistoryError,
    HistoryStore,
    RunModel,
    TaskInfo,
    compare_type,
    model_from_trace,
    plan_vs_actual,
    serve,
)
from faasplan.dashboard.figures import MAX_DAG_TASKS
from faasplan.dashboard.jobs import Jobs
from faasplan.data import trace_path
from faasplan.worker.log import Event
from faasplan.workflow import Workflow, task

pytest_plugins = ("conftest_redis",)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("FAASPLAN_TEST_ARTIFACTS",
                                ROOT / "build" / "test-artifacts" / "dashboard"))
BLAST = str(trace_path("blast_43t"))
MONTAGE = str(trace_path("montage_58t"))


# -- helpers --------------------------------------------------------------------------------------
def get(url: str) -> tuple[int, Any]:
    """``GET url`` -> (status, JSON body), errors included."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def send(url: str, body: Any = None, method: str = "POST", raw: bytes | None = None
         ) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.05,
             describe: Callable[[], str] | None = None) -> Any:
    """``check()``'s first truthy value; on timeout, fail with what ``describe()`` says."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    seen = f"; {describe()}" if describe is not None else ""
    raise AssertionError(f"condition not met within {timeout} s{seen}")


def entry(w: str, k: str, t: str | None = None, key: str | None = None, b: int = 0,
          s: float = 0.0, e: float = 0.0, x: str = "") -> dict[str, str]:
    """One log-stream entry as the runtime's contract says: one field ``e``, JSON."""
    return {"e": json.dumps({"w": w, "k": k, "t": t, "key": key, "b": b, "s": s, "e": e,
                             "x": x})}


def now_ms() -> float:
    return time.time() * 1000.0


class ContractRun:
    """A run written to Redis the way the runtime publishes one (info, registry, log)."""

    def __init__(self, client: Any, run_id: str, tasks: list[tuple[str, str, list[str]]],
                 predicted_ms: float | None = 1000.0) -> None:
        self.client, self.run_id, self.tasks = client, run_id, tasks
        self.log = f"fp:{run_id}:log"
        self.started = now_ms()
        info = {"run_id": run_id, "workflow": "contract", "planner": "wukong",
                "started_ms": self.started, "predicted_makespan_ms": predicted_ms,
                "tasks": [{"id": t, "function": f"pkg.{fn}", "upstream": up,
                           "worker": None, "memory_mb": 1024} for t, fn, up in tasks]}
        client.set(f"fp:{run_id}:info", json.dumps(info))
        client.zadd("fp:runs", {run_id: self.started})

    def add(self, *entries: dict[str, str]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for item in entries:
                pipe.xadd(self.log, item)
            pipe.execute()

    def play(self, exec_s: float = 0.0, fail: str | None = None) -> None:
        """Run every task in order on its own worker, with real wall-clock times."""
        for tid, _, up in self.tasks:
            w = f"flex-{tid}"
            t = now_ms()
            self.add(entry("client", "invoke", tid, w, 300, t, t, "inline"),
                     entry(w, "start", None, None, 1024, t, t + 1, "cold"))
            items = [entry(w, "fetch", tid, f"out:{u}", 100, t + 1, t + 2) for u in up]
            if items:
                self.add(*items)
            time.sleep(exec_s)
            if tid == fail:
                self.add(entry(w, "fail", tid, None, 0, now_ms(), now_ms(),
                               "Traceback (most recent call last):\nZeroDivisionError: boom"),
                         entry(w, "end", None, None, 0, now_ms(), now_ms()))
                return
            e0, e1 = t + 2, now_ms()
            self.add(entry(w, "execute", tid, None, 100, e0, e1, ""),
                     entry(w, "store", tid, f"out:{tid}", 100, e1, e1 + 1, ""),
                     entry(w, "end", None, None, 0, e1 + 1, e1 + 1))

    def clean_up(self) -> None:
        """What the client does at the end: leave the registry, delete the run's keys."""
        self.client.zrem("fp:runs", self.run_id)
        self.client.delete(self.log, f"fp:{self.run_id}:info")


def chain(n: int) -> list[tuple[str, str, list[str]]]:
    return [(f"t{i}", "step", [f"t{i - 1}"] if i else []) for i in range(n)]


@pytest.fixture(scope="module")
def history_dashboard() -> Iterator[str]:
    url, stop = serve(metrics=[BLAST, MONTAGE])
    yield url
    stop()


@pytest.fixture(scope="module")
def dash_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A redis-server of this module's own: its tests empty it and count the runs on it."""
    from conftest_redis import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("dashboard-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live_dashboard(dash_redis: Any) -> Iterator[tuple[str, Any]]:
    redis_server = dash_redis
    client = redis_server.client()
    client.flushall()
    url, stop = serve(redis_url=redis_server.url)
    yield url, client
    stop()
    client.close()


# -- the run model (pure) -------------------------------------------------------------------------
def diamond() -> RunModel:
    tasks = [TaskInfo("a", "m.make"), TaskInfo("b", "m.make"),
             TaskInfo("c", "m.join", ("a", "b"))]
    return RunModel("r", "wf", "wukong", tasks, t0=1000.0, predicted_makespan_ms=50.0)


def test_empty_run_is_done() -> None:
    m = RunModel("r", "wf", "p", [])
    assert (m.status, m.done_count(), m.detail()["tasks"]) == ("done", 0, [])


def test_states_follow_the_events() -> None:
    m = diamond()
    assert m.states() == ["ready", "ready", "waiting"]
    m.apply_all([Event("wa", "start", None, None, 1024, 1000, 1005, "cold"),
                 Event("wa", "execute", "a", None, 10, 1005, 1010)])
    assert m.state("a") == "storing"  # c runs elsewhere (flexible): an upload must follow
    m.apply(Event("wa", "store", "a", "out:a", 10, 1010, 1012))
    assert m.changes("a") == [("waiting", 1000), ("ready", 1000), ("running", 1005),
                              ("storing", 1010), ("done", 1012)]
    assert m.state("c") == "waiting"
    m.apply_all([Event("wb", "execute", "b", None, 10, 1003, 1020),
                 Event("wb", "end", None, None, 0, 1021, 1021)])
    # b's worker ended without an upload: its output was done when it executed.
    assert m.changes("b")[-1] == ("done", 1020)
    assert m.changes("c") == [("waiting", 1000), ("ready", 1020)]
    m.apply(Event("wa", "fetch", "c", "out:b", 10, 1021, 1022))
    assert m.state("c") == "running"
    s = m.summary()
    assert (s["done"], s["total"], s["status"], s["expected_end_s"]) == (2, 3, "running", 0.05)
    assert s["bytes"] == {"down": 10, "up": 10, "invoke": 0}


def test_output_used_on_its_own_worker_is_done() -> None:
    m = RunModel("r", "wf", "wukong", [TaskInfo("a", "m.f"), TaskInfo("b", "m.f", ("a",))])
    m.apply(Event("w", "execute", "a", None, 10, 0, 5))
    assert m.state("a") == "storing"  # flexible: b may run elsewhere, from storage
    m.apply(Event("w", "execute", "b", None, 10, 5, 9))
    assert m.changes("a")[-1] == ("done", 5) and m.state("b") == "storing"  # b is a sink
    m.apply(Event("w", "store", "b", "out:b", 10, 9, 11))
    assert (m.state("b"), m.summary()["status"]) == ("done", "done")


def test_failure_keeps_the_traceback() -> None:
    m = diamond()
    m.apply(Event("wa", "fail", "a", None, 0, 1100, 1100, "Traceback...\nValueError: x"))
    d = m.detail()
    assert d["run"]["status"] == "failed"
    assert d["tasks"][0]["state"] == "failed"
    assert d["failures"] == [{"task": "a", "worker": "wa", "t": 0.1,
                              "traceback": "Traceback...\nValueError: x"}]


def test_finished_trace_folds_like_a_live_run() -> None:
    wf = faasplan.workloads.tree_reduction(leaves=8)
    plan = faasplan.plan(wf, planner="wukong")
    trace = faasplan.simulate(wf, plan)
    model = model_from_trace(trace, wf, planner="wukong")
    d = model.detail()
    assert d["run"]["status"] == "done" and d["run"]["done"] == len(wf)
    for t in d["tasks"]:
        times = [c["t"] for c in t["changes"]]
        assert [c["state"] for c in t["changes"]][-1] == "done"
        assert times == sorted(times)
    executions = {bar["task"]: bar for w in d["workers"] for bar in w["timeline"]
                  if bar["phase"] == "execution"}
    rows = trace.tasks.set_index("task")
    assert set(executions) == set(rows.index)
    for tid, bar in executions.items():
        assert bar["start"] == pytest.approx(rows.loc[tid, "exec_start_ms"] / 1000, abs=1e-6)
        assert bar["end"] == pytest.approx(rows.loc[tid, "exec_end_ms"] / 1000, abs=1e-6)
    # the done time of the sink is the run's makespan
    sink = wf.sinks[0]
    done = next(t for t in d["tasks"] if t["task"] == sink)["changes"][-1]["t"]
    assert done == pytest.approx(trace.makespan_ms / 1000, rel=1e-3)


def test_plan_vs_actual_lines_up_tasks() -> None:
    wf = faasplan.workloads.tree_reduction(leaves=4)
    plan = faasplan.plan(wf, planner="uniform")
    same = plan_vs_actual(plan.predicted, plan.predicted)
    assert (same["exec_error_pct"].abs() < 1e-9).all() and (same["end_error_ms"] == 0).all()
    actual = faasplan.simulate(wf, plan, seed=3)
    table = plan_vs_actual(plan.predicted, actual)
    assert list(table["task"]) == list(actual.tasks["task"])
    expected = (actual.tasks["exec_ms"].to_numpy() / plan.predicted.tasks.set_index("task")
                .loc[list(table["task"]), "exec_ms"].to_numpy() - 1) * 100
    assert table["exec_error_pct"].to_numpy() == pytest.approx(expected)


# -- history --------------------------------------------------------------------------------------
def test_history_lists_types_with_their_runs() -> None:
    store = HistoryStore([BLAST, MONTAGE])
    types = store.to_json()["types"]
    assert len(types) == 2
    by_run = {t["runs"][0]["run_id"]: t for t in types}
    assert set(by_run) == {"blast_43t", "montage_58t"}
    assert by_run["blast_43t"]["records"] == 43 and by_run["blast_43t"]["comparable"]
    assert by_run["montage_58t"]["runs"][0]["tasks"] == 58


def test_history_compares_planners_on_a_type() -> None:
    store = HistoryStore([MONTAGE])
    key = next(iter(store.types))
    seen: list[tuple[str, int, int]] = []
    out = compare_type(store, key, CompareRequest(("wukong", "uniform"), "p90", 8),
                       lambda *a: seen.append(a))
    assert seen[-1] == ("planners", 2, 2)
    rows = {r["planner"]: r for r in out["summary"]}
    assert set(rows) == {"wukong", "uniform"}
    for r in rows.values():
        assert r["makespan_p50_ms"] <= r["makespan_p95_ms"] <= r["makespan_p99_ms"]
        assert r["cost_usd"] > 0
    for name, spans in out["cdf"].items():
        assert len(spans) == 8 and spans == sorted(spans)
        assert rows[name]["sla_makespan_ms"] == pytest.approx(float(np.quantile(spans, 0.9)))
    best = min(rows.values(), key=lambda r: (r["sla_makespan_ms"], r["cost_usd"]))
    assert out["best"]["planner"] == best["planner"]
    assert best["planner"] in out["pareto"]
    assert len(out["best"]["tasks"]) == 58 and len(out["best"]["plan_vs_actual"]) == 58
    assert out["workflow_hash"] in store.workflows


def test_history_of_a_parquet_store_compares_a_100_task_workflow(tmp_path: Path) -> None:
    """The acceptance case: a metrics store written by ``faasplan simulate --metrics-out``."""
    from faasplan.cli import main

    store_path = tmp_path / "runs.parquet"
    scenario = tmp_path / "tree.toml"
    scenario.write_text("[workflow]\nworkload = 'tree_reduction'\nparams = { leaves = 50 }\n",
                        encoding="utf-8")
    assert main(["simulate", str(scenario), "--replicates", "3", "--metrics-out",
                 str(store_path), "--json"]) == 0
    url, stop = serve(metrics=[str(store_path)])
    try:
        types = get(url + "api/history")[1]["types"]
        assert len(types) == 1 and types[0]["comparable"]
        assert types[0]["runs"][0]["tasks"] == 99
        started = time.perf_counter()
        status, out = send(url + f"api/history/{types[0]['id']}/compare",
                           {"planners": ["wukong", "uniform", "heft"], "replicates": 20})
        elapsed = time.perf_counter() - started
    finally:
        stop()
    assert status == 200 and out["tasks"] == 99
    assert [r["planner"] for r in out["summary"]] == ["wukong", "uniform", "heft"]
    print(f"\ncompare of 3 planners on a 99-task workflow over HTTP: {elapsed:.1f} s "
          f"(in the job: {out['elapsed_s']:.1f} s)")
    assert elapsed < 60


@pytest.mark.parametrize(("body", "match"), [
    ({"planners": ["nope"]}, "unknown planner"),
    ({"planners": []}, "non-empty list"),
    ({"sla": "p100"}, "sla must be"),
    ({"replicates": 0}, "replicates must be"),
    ({"seed": -1}, "seed must be"),
    ({"colour": 1}, "unknown field"),
    ([1], "JSON object"),
])
def test_compare_request_names_the_bad_field(body: Any, match: str) -> None:
    with pytest.raises(HistoryError, match=match):
        CompareRequest.parse(body)


def test_job_cancel_stops_its_process() -> None:
    store = HistoryStore([MONTAGE])
    jobs = Jobs(store)
    job = jobs.start(next(iter(store.types)), CompareRequest(("sim-guided", "heft", "wukong"),
                                                             "p95", 1000))
    wait_for(lambda: job.stage != "starting", timeout=60)
    assert job.cancel()
    assert job.status == "cancelled"
    wait_for(lambda: job._process.poll() is not None, timeout=10)
    assert job.to_json()["error"].endswith("was cancelled")
    assert not job.cancel()
    jobs.cancel_all()


# -- the JSON API over HTTP -----------------------------------------------------------------------
def test_api_history_and_compare(history_dashboard: str) -> None:
    url = history_dashboard
    status, body = get(url + "api/history")
    assert status == 200 and len(body["types"]) == 2
    blast = next(t for t in body["types"] if t["runs"][0]["run_id"] == "blast_43t")
    started = time.perf_counter()
    status, out = send(url + f"api/history/{blast['id']}/compare",
                       {"planners": ["wukong", "uniform"], "sla": "p95", "replicates": 6})
    elapsed = time.perf_counter() - started
    assert status == 200, out
    assert [r["planner"] for r in out["summary"]] == ["wukong", "uniform"]
    assert out["tasks"] == 43 and out["sla"] == "p95"
    assert elapsed < 60
    # the full type name works as well as its id
    status, _ = send(url + "api/history/" + urllib.request.quote(blast["name"], safe="")
                     + "/compare", {"planners": ["uniform"], "replicates": 2})
    assert status == 200


def test_api_jobs_report_progress_and_cancel(history_dashboard: str) -> None:
    url = history_dashboard
    key = get(url + "api/history")[1]["types"][0]["id"]
    status, job = send(url + f"api/history/{key}/jobs", {"planners": ["uniform"],
                                                         "replicates": 3})
    assert status == 202 and job["status"] == "running"
    done = wait_for(lambda: (lambda j: j if j["status"] != "running" else None)(
        get(url + f"api/jobs/{job['id']}")[1]), timeout=90, every=0.2)
    assert done["status"] == "done" and done["done"] == done["total"] == 1
    assert done["result"]["summary"][0]["planner"] == "uniform"
    status, slow = send(url + f"api/history/{key}/jobs", {"planners": ["sim-guided"],
                                                          "replicates": 1000})
    status, cancelled = send(url + f"api/jobs/{slow['id']}", method="DELETE", raw=b"")
    assert status == 200 and cancelled["status"] == "cancelled"


@pytest.mark.parametrize(("path", "body", "status", "match"), [
    ("api/history/ffffffff/compare", {"planners": ["wukong"]}, 404, "unknown workflow type"),
    ("api/history/{key}/compare", {"planners": ["nope"]}, 400, "unknown planner"),
    ("api/history/{key}/compare", {"sla": "fast"}, 400, "sla must be"),
    ("api/history/{key}/compare", None, 400, "not JSON"),
    ("api/nothing", {}, 404, "no such endpoint"),
])
def test_api_bad_requests_get_4xx_with_a_message(history_dashboard: str, path: str, body: Any,
                                                 status: int, match: str) -> None:
    key = get(history_dashboard + "api/history")[1]["types"][0]["id"]
    raw = b"{not json" if body is None else None
    got, out = send(history_dashboard + path.format(key=key), body, raw=raw)
    assert got == status and match in out["error"]


def test_api_runs_without_redis(history_dashboard: str) -> None:
    assert get(history_dashboard + "api/runs") == (200, {"runs": [], "redis": None,
                                                          "error": None})
    status, out = get(history_dashboard + "api/runs/r1")
    assert status == 404 and "no Redis given" in out["error"]


def test_serve_docstring_example_runs() -> None:
    import doctest

    import faasplan.dashboard.server as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_serve_refuses_a_bad_port_and_a_missing_file() -> None:
    with pytest.raises(ValueError, match=r"port must be in 0\.\.65535"):
        serve(port=70000)
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        serve(metrics=["missing.parquet"])


# -- the live view from a real redis-server -------------------------------------------------------
@pytest.mark.redis
def test_live_run_states_advance_while_it_runs(live_dashboard: tuple[str, Any]) -> None:
    url, client = live_dashboard
    run = ContractRun(client, "live-1", chain(6))
    player = threading.Thread(target=run.play, kwargs={"exec_s": 0.3})
    player.start()
    snapshots = []
    while player.is_alive():
        status, runs = get(url + "api/runs")
        if runs["runs"]:
            snapshots.append(runs["runs"][0]["done"])
        time.sleep(0.1)
    player.join()
    final = wait_for(lambda: (lambda r: r if r["runs"] and r["runs"][0]["done"] == 6 else None)(
        get(url + "api/runs")[1]))
    assert any(0 < d < 6 for d in snapshots), snapshots  # seen in between, not only at the end
    assert snapshots == sorted(snapshots)
    line = final["runs"][0]
    assert (line["id"], line["status"], line["total"], line["workflow"]) == (
        "live-1", "done", 6, "contract")
    status, detail = get(url + "api/runs/live-1")
    assert status == 200
    for t in detail["tasks"]:
        states = [c["state"] for c in t["changes"]]
        assert states == ["waiting", "ready", "running", "storing", "done"], t
        times = [c["t"] for c in t["changes"]]
        assert times == sorted(times)
    # each task starts after its upstream is done
    done_at = {t["task"]: t["changes"][-1]["t"] for t in detail["tasks"]}
    for t in detail["tasks"][1:]:
        running = next(c["t"] for c in t["changes"] if c["state"] == "running")
        assert running >= done_at[f"t{int(t['task'][1:]) - 1}"]
    assert {w["worker"] for w in detail["workers"]} == {f"flex-t{i}" for i in range(6)}
    assert all(not w["busy"] and w["startup"] == "cold" for w in detail["workers"])
    assert [b["phase"] for b in detail["workers"][1]["timeline"]] == [
        "start-up", "inputs", "execution", "upload"]
    # the client cleans up: the run leaves the registry and stays viewable as it was read
    run.clean_up()
    wait_for(lambda: client.exists(run.log) == 0)
    time.sleep(1.0)
    status, later = get(url + "api/runs/live-1")
    assert status == 200 and later["run"]["done"] == 6 and later["run"]["status"] == "done"


@pytest.mark.redis
def test_concurrent_runs_are_listed_and_isolated(live_dashboard: tuple[str, Any]) -> None:
    url, client = live_dashboard
    first = ContractRun(client, "run-a", chain(3))
    time.sleep(0.01)
    second = ContractRun(client, "run-b", [("x", "solo", []), ("y", "solo", []),
                                           ("z", "join", ["x", "y"])])
    threads = [threading.Thread(target=first.play, kwargs={"exec_s": 0.05}),
               threading.Thread(target=second.play, kwargs={"exec_s": 0.05, "fail": "z"})]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    runs = wait_for(lambda: (lambda r: r["runs"] if len(r["runs"]) == 2 and r["runs"][0][
        "done"] == 3 and r["runs"][1]["status"] == "failed" else None)(get(url + "api/runs")[1]))
    assert [r["id"] for r in runs] == ["run-a", "run-b"]  # oldest first
    a, b = get(url + "api/runs/run-a")[1], get(url + "api/runs/run-b")[1]
    assert [t["task"] for t in a["tasks"]] == ["t0", "t1", "t2"]
    assert [t["task"] for t in b["tasks"]] == ["x", "y", "z"]
    assert [t["state"] for t in b["tasks"]] == ["done", "done", "failed"]
    assert b["failures"][0]["task"] == "z" and "ZeroDivisionError" in b["failures"][0][
        "traceback"]
    assert not a["failures"] and {w["worker"] for w in a["workers"]}.isdisjoint(
        {w["worker"] for w in b["workers"]})


@pytest.mark.redis
def test_live_view_of_a_2000_task_run_stays_responsive(live_dashboard: tuple[str, Any]) -> None:
    """All entries land at once; the feed must catch up and the API answer quickly."""
    url, client = live_dashboard
    n = 2000
    tasks = [(f"leaf{i}", "leaf", []) for i in range(n // 2)] + [
        (f"sum{i}", "sum", [f"leaf{i}"]) for i in range(n // 2)]
    run = ContractRun(client, "big", tasks)
    t = now_ms()
    entries = []
    for tid, _, up in tasks:
        w = f"flex-{tid}"
        entries += [entry(w, "start", None, None, 1024, t, t + 1, "warm")]
        entries += [entry(w, "fetch", tid, f"out:{u}", 1000, t + 1, t + 2) for u in up]
        entries += [entry(w, "execute", tid, None, 1000, t + 2, t + 3),
                    entry(w, "store", tid, f"out:{tid}", 1000, t + 3, t + 4),
                    entry(w, "end", None, None, 0, t + 4, t + 4)]
    started = time.perf_counter()
    run.add(*entries)
    wait_for(lambda: [r["done"] for r in get(url + "api/runs")[1]["runs"]] == [n], timeout=60,
             every=0.1)
    caught_up = time.perf_counter() - started
    started = time.perf_counter()
    status, detail = get(url + "api/runs/big")
    detail_s = time.perf_counter() - started
    assert status == 200 and len(detail["tasks"]) == n
    print(f"\n2000-task run: {len(entries)} entries read in {caught_up:.2f} s; "
          f"GET /api/runs/big {detail_s:.2f} s")
    assert caught_up < 30 and detail_s < 5

    from faasplan.dashboard.model import model_from_info
    from faasplan.dashboard.pages import RunView
    from faasplan.runtime.events import event_from_json

    model = model_from_info(json.loads(client.get("fp:big:info")))
    model.apply_all(event_from_json(e["e"]) for e in entries)
    started = time.perf_counter()
    view = RunView(model)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    view.update()
    update_s = time.perf_counter() - started
    print(f"run view of 2000 tasks: built in {build_s:.2f} s, updated in {update_s:.3f} s; "
          f"DAG drawn as {len(view.dag.source.data['x'])} groups")
    assert view.dag.grouped and len(model.tasks) > MAX_DAG_TASKS
    assert len(view.dag.source.data["x"]) == 2  # (generation, function) groups
    assert view.functions is not None
    assert build_s < 10 and update_s < 2


@task
def slow_leaf(i: int) -> int:
    time.sleep(0.4)
    return i


@task
def slow_add(a: int, b: int) -> int:
    time.sleep(0.4)
    return a + b


@task
def slow_inc(a: int) -> int:
    time.sleep(0.4)
    return a + 1


def slow_chain(n: int) -> Workflow:
    node = slow_leaf(0)
    for _ in range(n - 1):
        node = slow_inc(node)
    return Workflow(node, name="slow_chain")


def slow_tree(leaves: int = 4) -> Workflow:
    level = [slow_leaf(i) for i in range(leaves)]
    while len(level) > 1:
        level = [slow_add(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return Workflow(level[0], name="slow_tree")


@pytest.mark.redis
def test_live_view_of_a_real_run(live_dashboard: tuple[str, Any], dash_redis: Any) -> None:
    url, _ = live_dashboard
    wf = slow_tree(4)
    plan = faasplan.plan(wf, planner="wukong")
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.setdefault(
        "run", faasplan.run(wf, plan, dash_redis.url, timeout_s=120)))
    runner.start()
    seen = []
    while runner.is_alive():
        runs = get(url + "api/runs")[1]["runs"]
        if runs:
            seen.append((runs[0]["done"], runs[0]["status"]))
        time.sleep(0.1)
    runner.join()
    assert "run" in result and result["run"].result == 6
    assert any(0 < d < len(wf) for d, _ in seen), seen
    run_id = result["run"].run_id
    final = wait_for(lambda: (lambda r: r if r["run"]["done"] == len(wf) else None)(
        get(url + f"api/runs/{run_id}")[1]))
    assert final["run"]["status"] == "done" and final["run"]["planner"] == "wukong"
    assert final["run"]["expected_end_s"] == pytest.approx(plan.predicted_makespan_ms / 1000,
                                                           rel=1e-6)
    executed = {bar["task"] for w in final["workers"] for bar in w["timeline"]
                if bar["phase"] == "execution"}
    assert executed == set(wf.topological_order)
    for t in final["tasks"]:
        times = [c["t"] for c in t["changes"]]
        assert t["state"] == "done" and times == sorted(times)


@task
def broken(a: int) -> int:
    raise ZeroDivisionError(f"no share for {a}")


@pytest.mark.redis
def test_live_view_shows_the_traceback_of_a_real_failure(live_dashboard: tuple[str, Any],
                                                         dash_redis: Any) -> None:
    from faasplan.runtime import RemoteTaskError

    url, _ = live_dashboard
    wf = Workflow(broken(slow_leaf(1)), name="broken_run")
    # keep_data: the client learns of the failure before the worker's last log entries
    # reach the stream, and would delete the run's keys at once.
    with pytest.raises(RemoteTaskError):
        faasplan.run(wf, None, dash_redis.url, timeout_s=60, max_retries=0, keep_data=True)
    runs = wait_for(lambda: get(url + "api/runs")[1]["runs"], timeout=10)
    detail = wait_for(lambda: (lambda d: d if d["failures"] else None)(
        get(url + f"api/runs/{runs[0]['id']}")[1]), timeout=10)
    assert detail["run"]["status"] == "failed" and detail["run"]["done"] == 1
    assert [t["state"] for t in detail["tasks"]] == ["done", "failed"]
    failure = detail["failures"][0]
    assert failure["task"] == "broken-0" and "ZeroDivisionError: no share for 1" in failure[
        "traceback"]


# -- pages in a real browser ----------------------------------------------------------------------
def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (scripts/test.sh does it)")
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1900"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    return webdriver.Chrome(service=Service(driver), options=opts)


# Walks the shadow roots (Bokeh draws inside them) and reads the page's Bokeh document.
PAGE_JS = """
let canvases = 0;
const cells = [];
function walk(root) { for (const el of root.querySelectorAll('*')) {
  if (el.shadowRoot) walk(el.shadowRoot);
  if (el.tagName === 'TR') cells.push(Array.from(el.children).map(c => c.textContent.trim()));
  if (el.tagName === 'CANVAS' && el.width > 0 && el.height > 0) canvases += 1; } }
walk(document);
const docs = (window.Bokeh && Bokeh.documents) || [];
const named = [], states = [], bars = [];
if (docs.length) for (const m of docs[0].all_models) {
  if (m.name && m.name.startsWith('faasplan-')) named.push(m.name);
  if (m.type === 'ColumnDataSource' || (m.data && m.data.state !== undefined)) {
    if (m.data && m.data.state !== undefined && m.data.label !== undefined)
      states.push(...Array.from(m.data.state));
    if (m.data && m.data.phase !== undefined && m.data.worker !== undefined)
      bars.push(m.data.phase.length);

  } }
return {canvases: canvases, named: named, states: states, bars: bars, rows: cells};
"""


# Only the DAG's task states (cheap enough to sample several times a second).
STATES_JS = """
const docs = (window.Bokeh && Bokeh.documents) || [];
if (!docs.length) return [];
for (const m of docs[0].all_models)
  if (m.data && m.data.state !== undefined && m.data.label !== undefined)
    return Array.from(m.data.state);
return [];
"""


# The page's text, shadow roots included (what a person would read on the screen).
TEXT_JS = """
const out = [];
function walk(root) { for (const el of root.querySelectorAll('*')) {
  if (el.shadowRoot) walk(el.shadowRoot);
  if (!el.children.length && !['SCRIPT', 'STYLE'].includes(el.tagName)
      && el.textContent.trim()) out.push(el.textContent.trim()); } }
walk(document);
return out.join(' | ').slice(0, 1500);
"""


def _seen(driver: Any) -> Callable[[], str]:
    """What a browser wait that timed out reports: the page's text and its console errors."""
    def describe() -> str:
        try:
            text = repr(driver.execute_script(TEXT_JS))
        except Exception as exc:  # the browser itself is gone: say so
            text = f"none, the browser did not answer: {exc!r}"
        try:
            logs = repr(_severe(driver)[:5])
        except Exception as exc:
            logs = f"not readable: {exc!r}"
        return f"page text: {text}; console errors: {logs}"
    return describe


# What BokehJS logs when a patch names a model its document does not have: from then on
# the page no longer follows the server. It happened when the live page built a run's view
# while the browser was still fetching the document (the refresh now starts on load,
# pages.live_page): in 4 of 5 runs of these tests before, in none of 10 after.
DESYNC = "isn't known"


def _severe(driver: Any) -> list[str]:
    """The page's console errors since the last look (reading them empties the log)."""
    return [e.get("message", "") for e in driver.get_log("browser")
            if e.get("level") == "SEVERE"]


def _desync(driver: Any) -> list[str]:
    """The console errors so far that say the page lost track of the server's models."""
    return [m for m in _severe(driver) if DESYNC in m]


def wait_page(driver: Any, check: Callable[[], Any], timeout: float, every: float = 0.2
              ) -> Any:
    """:func:`wait_for` on a dashboard page (a timeout reports the page's text and console
    errors), which also fails if BokehJS lost track of the server's document
    (:data:`DESYNC` in the console) while waiting."""
    found = wait_for(check, timeout, every, _seen(driver))
    lost = _desync(driver)
    assert not lost, f"the page lost sync with the server: {lost[:3]}"
    return found


def _buttons(driver: Any) -> dict[str, Any]:
    found = driver.execute_script("""
      const out = []; function walk(root) { for (const el of root.querySelectorAll('*')) {
        if (el.shadowRoot) walk(el.shadowRoot); if (el.tagName === 'BUTTON') out.push(el); } }
      walk(document); return out;""")
    return {b.text.strip(): b for b in found if b.text.strip()}


def test_history_page_runs_a_comparison_in_a_browser(history_dashboard: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = _browser()
    try:
        driver.get(history_dashboard + "history")
        wait_for(lambda: "faasplan-runs" in driver.execute_script(PAGE_JS)["named"], 60, 0.2,
                 _seen(driver))
        wait_for(lambda: "Compare" in _buttons(driver), 30, 0.2, _seen(driver))
        _buttons(driver)["Compare"].click()
        page = wait_for(lambda: (lambda p: p if {"faasplan-cdf", "faasplan-pareto",
                                                  "faasplan-gantt", "faasplan-summary"}
                                 <= set(p["named"]) and p["canvases"] >= 3 else None)(
            driver.execute_script(PAGE_JS)), 120, 0.3, _seen(driver))
        time.sleep(1.0)  # let the last frame paint before the screenshot
        driver.save_screenshot(str(ARTIFACTS / "history.png"))
    finally:
        driver.quit()
    assert sum(page["bars"]) > 0  # the best plan's Gantt has bars
    assert (ARTIFACTS / "history.png").stat().st_size > 10_000


@pytest.mark.redis
def test_live_page_shows_a_run_advancing_in_a_browser(live_dashboard: tuple[str, Any]) -> None:
    url, client = live_dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run = ContractRun(client, "browser-run", chain(8), predicted_ms=3000.0)
    driver = _browser()
    try:
        driver.get(url + "?run=browser-run")
        wait_page(driver, lambda: driver.execute_script(STATES_JS), 60)
        player = threading.Thread(target=run.play, kwargs={"exec_s": 0.6})
        player.start()
        samples = []
        while player.is_alive():
            samples.append(driver.execute_script(STATES_JS).count("done"))
            time.sleep(0.2)
        player.join()
        final = wait_for(lambda: (lambda p: p if p["states"].count("done") == 8 else None)(
            driver.execute_script(PAGE_JS)), 30, 0.2, _seen(driver))
        time.sleep(1.0)
        driver.save_screenshot(str(ARTIFACTS / "live.png"))
    finally:
        driver.quit()
    assert any(0 < s < 8 for s in samples), samples  # the page changed while the run ran
    assert samples == sorted(samples)
    assert {"faasplan-dag", "faasplan-gantt", "faasplan-bytes"} <= set(final["named"])
    assert sum(final["bars"]) >= 8 * 3 and final["canvases"] >= 3
    workers = {r[0]: r for r in final["rows"] if r and r[0].startswith("flex-t")}
    assert sorted(workers) == [f"flex-t{i}" for i in range(8)]
    assert all(r[4] == "idle" and r[5] == "1" for r in workers.values()), workers


@pytest.mark.redis
def test_live_page_fills_in_during_a_real_run(live_dashboard: tuple[str, Any],
                                              dash_redis: Any) -> None:
    url, _ = live_dashboard
    wf = slow_chain(7)  # one worker runs it (cheap); about 3 s of tasks after start-up
    driver = _browser()
    try:
        driver.get(url)  # no run yet: the page picks the newest run when one appears
        wait_for(lambda: "Runs" in driver.title or driver.execute_script(
            "return !!(window.Bokeh && Bokeh.documents.length)"), 60, 0.2)
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.setdefault(
            "run", faasplan.run(wf, None, dash_redis.url, timeout_s=120)))
        runner.start()
        samples = []
        while runner.is_alive():
            states = driver.execute_script(STATES_JS)
            samples.append((round(time.time(), 2), len(states), states.count("done")))
            time.sleep(0.2)
        runner.join()
        try:
            wait_for(lambda: driver.execute_script(STATES_JS).count("done") == len(wf), 60,
                     0.2)
        except AssertionError:
            pytest.fail(f"the page never showed {len(wf)} tasks done: it shows "
                        f"{driver.execute_script(STATES_JS)}; the API says "
                        f"{get(url + 'api/runs')[1]}")
        time.sleep(1.0)
        driver.save_screenshot(str(ARTIFACTS / "live-real-run.png"))
    finally:
        driver.quit()
    assert result["run"].result == 6
    assert any(0 < n < len(wf) for _, _, n in samples), samples  # (time, tasks drawn, done)


# -- the notebook view in a real Jupyter kernel ---------------------------------------------------
def test_notebook_view_renders_inline(tmp_path: Path) -> None:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    spec_dir = tmp_path / "kernels" / "faasplan-dashboard-tests"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "faasplan tests", "language": "python"}), encoding="utf-8")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import faasplan\nfrom faasplan.dashboard import view\n"
        "wf = faasplan.workloads.tree_reduction(leaves=4)\n"
        "plan = faasplan.plan(wf, planner='uniform')\n"
        "view(faasplan.simulate(wf, plan, seed=1), wf, plan)")])
    km = AsyncKernelManager(kernel_name="faasplan-dashboard-tests",
                            kernel_spec_manager=KernelSpecManager(
                                kernel_dirs=[str(tmp_path / "kernels")]))
    client = NotebookClient(nb, km=km, kernel_name="faasplan-dashboard-tests", timeout=240)
    with client.setup_kernel(cleanup_kc=True):
        client.execute_cell(nb.cells[0], 0)
    outputs = nb.cells[0].outputs
    mimes = {m for out in outputs for m in out.get("data", {})}
    assert "application/vnd.holoviews_exec.v0+json" in mimes, mimes
    result = next(o for o in outputs if o.get("output_type") == "execute_result")
    assert {"text/html", "application/vnd.holoviews_exec.v0+json"} <= set(result["data"])
    assert "faasplan-gantt" in json.dumps(result["data"])  # the run view's figures are there


# -- the command ----------------------------------------------------------------------------------
def test_cli_bad_input_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from faasplan.cli import main

    assert main(["dashboard", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["dashboard", "--metrics", "nowhere.parquet"]) == 2
    err = capsys.readouterr().err
    assert "--metrics" in err and "nowhere.parquet" in err
    assert main(["dashboard", "--redis", "http://x"]) == 2
    assert "--redis" in capsys.readouterr().err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(("stop", "sigint_ignored"), [
    (signal.SIGINT, False),
    # A shell starts a script's background jobs with SIGINT ignored; Ctrl-C must still work.
    (signal.SIGINT, True),
    (signal.SIGTERM, False),
], ids=["sigint", "sigint-ignored-by-parent", "sigterm"])
def test_cli_serves_until_interrupted(stop: signal.Signals, sigint_ignored: bool) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "faasplan", "dashboard", "--port", "0",
                             "--metrics", BLAST], stdout=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint if sigint_ignored else None)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("faasplan dashboard: http://127.0.0.1:"), line
        url = line.split()[2]
        status, body = get(url + "api/history")
        assert status == 200 and body["types"][0]["runs"][0]["run_id"] == "blast_43t"
        proc.send_signal(stop)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


SLOW_FLOW = '''
import time
from faasplan import Workflow, task

@task
def step(x):
    time.sleep(1.5)
    return x + 1

def build():
    return Workflow(step(step(step(0))), name="slow-chain")
'''


def test_run_with_dashboard_serves_the_run_live(tmp_path: Path) -> None:
    (tmp_path / "slowflow.py").write_text(SLOW_FLOW)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "faasplan", "run", "slowflow:build",
                             "--dashboard", "0", "--no-files", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            if line.startswith("faasplan dashboard: http://127.0.0.1:"):
                url = line.split()[2]
                break
        assert url is not None, "no dashboard URL printed"

        def listed() -> Any:
            status, body = get(url + "api/runs")
            runs = body.get("runs", []) if status == 200 else []
            return runs or None

        runs = wait_for(listed, timeout=60.0, every=0.2)
        assert runs[0]["workflow"] == "slow-chain"
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert json.loads(out)["result"] == 3
    finally:
        if proc.poll() is None:
            proc.kill()


# -- plan against actual, and running a plan from the history view ------------------------------
def test_prediction_of_a_plan_lines_up_with_the_actual_run() -> None:
    from faasplan.dashboard import prediction_from_json, prediction_from_trace

    wf = faasplan.workloads.tree_reduction(leaves=4)
    plan = faasplan.plan(wf, planner="uniform")
    prediction = prediction_from_trace(plan.predicted, wf)
    assert prediction_from_json(json.loads(json.dumps(prediction.to_json()))) == prediction
    actual = faasplan.simulate(wf, plan, seed=3)
    model = model_from_trace(actual, wf, prediction=prediction)
    assert model.predicted_makespan_ms == pytest.approx(plan.predicted.makespan_ms)
    rows = {r["task"]: r for r in model.plan_vs_actual()}
    assert set(rows) == set(wf.topological_order)
    predicted = plan.predicted.tasks.set_index("task")
    measured = actual.tasks.set_index("task")
    for tid, r in rows.items():
        assert r["predicted_exec"] == pytest.approx(predicted.loc[tid, "exec_ms"] / 1000,
                                                    abs=1e-6)
        assert r["actual_exec"] == pytest.approx(measured.loc[tid, "exec_ms"] / 1000, abs=1e-6)
        assert r["exec_ratio"] == pytest.approx(measured.loc[tid, "exec_ms"]
                                                / predicted.loc[tid, "exec_ms"], rel=1e-4)
        assert r["predicted_end"] == pytest.approx(predicted.loc[tid, "end_ms"] / 1000,
                                                   abs=1e-6)
    detail = {t["task"]: t for t in model.detail()["tasks"]}
    assert all(detail[t]["predicted"]["worker"] == predicted.loc[t, "worker"] for t in rows)
    # the predicted Gantt has an execution bar per task
    bars = [t for t, ph in zip(prediction.segments["task"], prediction.segments["phase"],
                               strict=True) if ph == "execution"]
    assert sorted(bars) == sorted(wf.topological_order)


def test_plan_vs_actual_of_a_live_model_fills_in_as_tasks_execute() -> None:
    from faasplan.dashboard import PredictedTask, Prediction

    m = diamond()
    m.prediction = Prediction(50.0, {"a": PredictedTask("wa", 0, 1, 11, 12),
                                     "b": PredictedTask("wb", 0, 1, 21, 22),
                                     "c": PredictedTask("wa", 22, 23, 43, 50)}, {})
    assert [r["exec_ratio"] for r in m.plan_vs_actual()] == [None, None, None]
    m.apply_all([Event("wa", "start", None, None, 1024, 1000, 1001, "cold"),
                 Event("wa", "execute", "a", None, 10, 1001, 1021),
                 Event("wa", "store", "a", "out:a", 10, 1021, 1022)])
    a, b, c = m.plan_vs_actual()
    assert a["exec_ratio"] == pytest.approx(2.0) and a["actual_exec"] == pytest.approx(0.02)
    assert a["end_error"] == pytest.approx(0.022 - 0.012)
    assert b["exec_ratio"] is None and c["actual_end"] is None
    assert c["predicted_start"] == pytest.approx(0.022)


@pytest.mark.parametrize(("body", "match"), [
    ({}, "planner must be one of"),
    ({"planner": "nope"}, "planner must be one of"),
    ({"planner": "heft", "sla": "p0x"}, "sla must be"),
    ({"planner": "heft", "time_scale": 0}, "time_scale must be"),
    ({"planner": "heft", "time_scale": "fast"}, "time_scale must be"),
    ({"planner": "heft", "timeout_s": -1}, "timeout_s must be"),
    ({"planner": "heft", "replicates": 3}, "unknown field"),
    ("heft", "JSON object"),
])
def test_run_request_names_the_bad_field(body: Any, match: str) -> None:
    from faasplan.dashboard import RunRequest

    with pytest.raises(HistoryError, match=match):
        RunRequest.parse(body)


@pytest.fixture(scope="module")
def tree_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A metrics store with its workflow catalog: simulated runs of a 7-task tree."""
    from faasplan.cli import main

    folder = tmp_path_factory.mktemp("tree-store")
    scenario = folder / "tree.toml"
    scenario.write_text("[workflow]\nworkload = 'tree_reduction'\nparams = { leaves = 4 }\n",
                        encoding="utf-8")
    store = folder / "runs.parquet"
    assert main(["simulate", str(scenario), "--replicates", "2", "--metrics-out", str(store),
                 "--json"]) == 0
    return store


@pytest.fixture(scope="module")
def tree_trace(tree_store: Path) -> Path:
    """The same tree as a WfFormat trace (no code: synthetic tasks)."""
    from faasplan.cli import main

    out = tree_store.parent / "tree-trace.json"
    assert main(["export", str(tree_store.parent / "tree.toml"), "--planner", "wukong",
                 "--wfformat", str(out), "--json"]) == 0
    return out


def test_run_support_says_what_can_run(tree_store: Path, tree_trace: Path,
                                       tmp_path: Path) -> None:
    from faasplan.dashboard import run_support

    code = HistoryStore([str(tree_store)])
    assert run_support(code, next(iter(code.types)))[0] == "code"
    synthetic = HistoryStore([str(tree_trace)])
    mode, why = run_support(synthetic, next(iter(synthetic.types)))
    assert mode == "synthetic" and "sleeps its predicted execution time" in why
    bare = tmp_path / "bare.parquet"  # the records without the catalog of definitions
    shutil.copy(tree_store, bare)
    unknown = HistoryStore([str(bare)])
    mode, why = run_support(unknown, next(iter(unknown.types)))
    assert mode is None and "cannot be run" in why


def test_plan_run_of_a_synthetic_type_sleeps_the_predicted_times(tree_trace: Path) -> None:
    from faasplan.dashboard import RunRequest, plan_run
    from faasplan.dashboard.history import resolve

    store = HistoryStore([str(tree_trace)])
    request = RunRequest.parse({"planner": "uniform", "time_scale": 50})
    wf, rows, _ = resolve(store, next(iter(store.types)), request.as_compare())
    to_run, plan, prediction = plan_run(wf, rows, request)
    assert to_run.structure_hash == wf.structure_hash
    plan.validate(to_run)  # the plan of the type applies to the sleeping copy
    for tid in to_run.topological_order:
        node = to_run.tasks[tid]
        assert node.kwargs["sleep"] is True
        assert node.kwargs["runtime_ms"] == pytest.approx(
            50 * plan.predicted.tasks.set_index("task").loc[tid, "exec_ms"])
        # the prediction is the simulator's run of the plan with exactly those times
        assert prediction.tasks[tid].exec_ms == pytest.approx(node.kwargs["runtime_ms"])
    assert prediction.source == "simulated at time scale 50"
    root = to_run.tasks[to_run.roots[0]]
    started = time.perf_counter()
    out = root.func.fn(*root.args, **root.kwargs)  # what a worker calls
    assert time.perf_counter() - started >= root.kwargs["runtime_ms"] / 1000
    assert out.nbytes == root.kwargs["output_bytes"]


@pytest.fixture
def redis_dashboard(dash_redis: Any) -> Iterator[Callable[..., str]]:
    """Serve dashboards on the module's (emptied) redis-server with the given histories."""
    client = dash_redis.client()
    client.flushall()
    client.close()
    stops: list[Callable[[], None]] = []

    def open_dashboard(*metrics: Path) -> str:
        url, stop = serve(redis_url=dash_redis.url, metrics=[str(m) for m in metrics])
        stops.append(stop)
        return url

    yield open_dashboard
    for stop in stops:
        stop()


def _only_type(url: str) -> str:
    types = get(url + "api/history")[1]["types"]
    assert len(types) == 1, types
    return str(types[0]["id"])


def _finished(url: str, started: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """The run a ``POST .../run`` answer names, once it is no longer running; a job that
    failed before its run appeared fails the test with the job's error."""
    def done() -> Any:
        status, body = get(url + f"api/runs/{started['run']}")
        if status == 200 and body["run"]["status"] != "running":
            return body
        job = get(url + f"api/jobs/{started['job']}")[1]
        if job["status"] == "failed":
            pytest.fail(f"the run job failed: {job.get('error')}")
        return None

    return wait_for(done, timeout=timeout, every=0.2)


@pytest.mark.redis
def test_any_run_with_a_plan_shows_plan_vs_actual(redis_dashboard: Callable[..., str],
                                                  dash_redis: Any) -> None:
    """A run the dashboard did not start (faasplan.run from a script) carries its plan's
    per-task prediction in its info key, so the plan-vs-actual view works for it too."""
    url = redis_dashboard()
    wf = faasplan.workloads.tree_reduction(leaves=4)
    plan = faasplan.plan(wf, planner="heft", seed=2)
    result = faasplan.run(wf, plan, dash_redis.url, timeout_s=120)
    status, pva = get(url + f"api/runs/{result.run_id}/plan-vs-actual")
    assert status == 200 and pva["predicted"] and pva["source"] == "plan"
    assert {r["task"] for r in pva["tasks"]} == set(wf.topological_order)
    predicted = plan.predicted.tasks.drop_duplicates("task").set_index("task")
    for r in pva["tasks"]:
        assert r["predicted_exec"] == pytest.approx(
            float(predicted.loc[r["task"], "exec_ms"]) / 1000.0, rel=1e-3, abs=1e-5)
        assert r["actual_exec"] is not None and r["exec_ratio"] > 0


@pytest.mark.redis
def test_api_runs_a_plan_from_the_history_for_real(redis_dashboard: Callable[..., str],
                                                   tree_store: Path) -> None:
    url = redis_dashboard(tree_store)
    key = _only_type(url)
    status, out = send(url + f"api/history/{key}/run", {"planner": "wukong", "sla": "p90"})
    assert status == 202, out
    run_id = out["run"]
    assert out["live"] == f"./?run={run_id}"
    detail = _finished(url, out)
    assert detail["run"]["status"] == "done"
    assert detail["run"]["done"] == detail["run"]["total"] == 7
    assert detail["run"]["planner"] == "wukong"
    assert all("predicted" in t for t in detail["tasks"])
    status, pva = get(url + f"api/runs/{run_id}/plan-vs-actual")
    assert status == 200 and pva["predicted"] and pva["source"] == "plan"
    assert {r["task"] for r in pva["tasks"]} == {t["task"] for t in detail["tasks"]}
    for r in pva["tasks"]:
        for field in ("predicted_exec", "actual_exec", "exec_ratio", "predicted_end",
                      "actual_end", "end_error"):
            assert r[field] is not None and np.isfinite(r[field]), (field, r)
        assert r["exec_ratio"] > 0
        # the API rounds times to the microsecond: a short task's ratio recomputed from
        # rounded times is only as good as that rounding
        rounding = 5e-7 / min(r["actual_exec"], r["predicted_exec"])
        assert r["exec_ratio"] == pytest.approx(r["actual_exec"] / r["predicted_exec"],
                                                rel=1e-3 + 2 * rounding, abs=1e-6)
    assert pva["exec_ratio"]["executed"] == 7
    job = wait_for(lambda: (lambda j: j if j["status"] != "running" else None)(
        get(url + f"api/jobs/{out['job']}")[1]), timeout=30)
    assert job["status"] == "done" and job["kind"] == "run" and job["run"] == run_id
    assert job["result"]["makespan_ms"] > 0
    assert pva["predicted_makespan_s"] == pytest.approx(
        job["result"]["predicted_makespan_ms"] / 1000, rel=1e-6)


@pytest.mark.redis
def test_api_runs_a_wfformat_type_as_sleeping_tasks(redis_dashboard: Callable[..., str],
                                                    tree_trace: Path) -> None:
    url = redis_dashboard(tree_trace)
    key = _only_type(url)
    # the trace's tasks took about 0.1 s: each sleeps its predicted time x 3
    status, out = send(url + f"api/history/{key}/run", {"planner": "uniform",
                                                        "time_scale": 3})
    assert status == 202, out
    detail = _finished(url, out)
    assert detail["run"]["status"] == "done" and detail["run"]["done"] == 7
    pva = get(url + f"api/runs/{out['run']}/plan-vs-actual")[1]
    assert pva["source"] == "simulated at time scale 3"
    assert detail["run"]["expected_end_s"] == pva["predicted_makespan_s"]
    ratios = [r["exec_ratio"] for r in pva["tasks"]]
    assert len(ratios) == 7 and all(r is not None and np.isfinite(r) for r in ratios)
    # each task slept its predicted time: it took at least that, and not much more
    assert min(ratios) >= 0.95 and pva["exec_ratio"]["median"] < 3.0, ratios


@pytest.mark.redis
def test_api_run_bad_requests_get_4xx_with_a_message(redis_dashboard: Callable[..., str],
                                                     history_dashboard: str,
                                                     tree_store: Path, tmp_path: Path) -> None:
    url = redis_dashboard(tree_store)
    key = _only_type(url)
    status, out = send(url + "api/history/ffffffff/run", {"planner": "heft"})
    assert status == 404 and "unknown workflow type" in out["error"]
    status, out = send(url + f"api/history/{key}/run", {"planner": "nope"})
    assert status == 400 and "planner must be one of" in out["error"]
    status, out = send(url + f"api/history/{key}/run", None, raw=b"{")
    assert status == 400 and "not JSON" in out["error"]
    status, out = get(url + "api/runs/nothing/plan-vs-actual")
    assert status == 404 and "unknown run 'nothing'" in out["error"]
    # no Redis configured: 409, saying how to start the dashboard
    other = get(history_dashboard + "api/history")[1]["types"][0]["id"]
    status, out = send(history_dashboard + f"api/history/{other}/run", {"planner": "heft"})
    assert status == 409 and "--redis URL" in out["error"]
    # a type whose code is not known: the records without the catalog of definitions
    bare = tmp_path / "bare.parquet"
    shutil.copy(tree_store, bare)
    url2 = redis_dashboard(bare)
    status, out = send(url2 + f"api/history/{_only_type(url2)}/run", {"planner": "heft"})
    assert status == 422 and "cannot be run" in out["error"]


# Sets a Bokeh widget's value by its title (what typing into it does), from the page.
SET_INPUT_JS = """
const [title, value] = arguments;
for (const m of Bokeh.documents[0].all_models)
  if (m.title === title && m.value !== undefined) { m.value = value; return true; }
return false;
"""


@pytest.mark.redis
def test_history_page_runs_a_plan_and_shows_it_live_in_a_browser(
        redis_dashboard: Callable[..., str], tree_trace: Path) -> None:
    url = redis_dashboard(tree_trace)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = _browser()
    try:
        driver.get(url + "history")
        wait_for(lambda: "Run on Redis" in _buttons(driver), 60, 0.2, _seen(driver))
        # synthetic tasks: each sleeps its predicted time x 25 (about 2.5 s)
        assert driver.execute_script(SET_INPUT_JS, "time scale (synthetic tasks)", 25.0)
        time.sleep(0.5)
        driver.save_screenshot(str(ARTIFACTS / "history-run-button.png"))
        _buttons(driver)["Run on Redis"].click()
        wait_for(lambda: "?run=" in driver.current_url, 60, 0.2, _seen(driver))
        run_id = driver.current_url.split("?run=")[1]
        samples = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = driver.execute_script(STATES_JS)
            samples.append(states.count("done"))
            if states and states.count("done") == len(states):
                break
            time.sleep(0.2)
        # the plan-vs-actual table as drawn: a row per task, each with its ratio (once the
        # last update lands)
        tasks = {f"make_leaf-{i}" for i in range(4)} | {f"add-{i}" for i in range(3)}

        def table_done() -> Any:
            page = driver.execute_script(PAGE_JS)
            shown = [r for r in page["rows"] if len(r) == 11 and r[0] in tasks]
            return (page, shown) if len(shown) == 7 and all(
                r[2] == "done" and r[7] != "-" for r in shown) else None

        final, shown = wait_page(driver, table_done, 30, 0.3)
        points = driver.execute_script(POINTS_JS)
        time.sleep(1.0)
        driver.save_screenshot(str(ARTIFACTS / "live-plan-vs-actual.png"))
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        time.sleep(0.5)
        driver.save_screenshot(str(ARTIFACTS / "live-plan-vs-actual-table.png"))
    finally:
        driver.quit()
    assert samples[-1] == 7, samples
    assert any(0 < s < 7 for s in samples), samples  # the live view advanced while it ran
    assert samples == sorted(samples)
    assert {"faasplan-dag", "faasplan-gantt", "faasplan-pva-plot"} <= set(final["named"])
    detail = get(url + f"api/runs/{run_id}")[1]
    assert detail["run"]["status"] == "done" and detail["run"]["planner"] == "wukong"
    # the page shows the API's numbers: a table row and a point per task
    pva = {r["task"]: r for r in get(url + f"api/runs/{run_id}/plan-vs-actual")[1]["tasks"]}
    assert {r[0] for r in shown} == set(pva) == set(points)
    for row in shown:
        assert float(row[7]) == pytest.approx(pva[row[0]]["exec_ratio"], abs=1e-3)
        assert points[row[0]] == pytest.approx(pva[row[0]]["exec_ratio"], rel=1e-6)


# The points of the actual-against-predicted scatter: task -> actual / predicted.
POINTS_JS = """
for (const m of Bokeh.documents[0].all_models)
  if (m.data && m.data.ratio !== undefined && m.data.task !== undefined) {
    const out = {};
    m.data.task.forEach((t, i) => { out[t] = m.data.ratio[i]; });
    return out; }
return {};
"""
