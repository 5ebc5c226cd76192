"""WfChef instances: recipes, sizes, seeded determinism, CLI targets and scenarios."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faasplan import simulate
from faasplan.cli import main
from faasplan.scenarios import build_workflow, load_scenario, load_target
from faasplan.scenarios.validate import validate_file
from faasplan.workloads import wfchef
from faasplan.workloads.wfchef import (
    BROKEN_RECIPES,
    INSTALL_HINT,
    RECIPES,
    MissingExtraError,
    min_tasks,
    wfchef_instance,
)

SCENARIO = """\
[scenario]
name = "genome-wfchef"
replicates = 2

[workflow]
wfchef = {{ recipe = "genome", tasks = {tasks}, seed = 3 }}

[planning]
planners = ["wukong", "heft"]
"""


def recipe_types(recipe: str) -> set[str]:
    """The task types of a recipe, as WfCommons ships them."""
    from wfcommons.wfchef import recipes

    folder = Path(getattr(recipes, RECIPES[recipe])().this_dir)
    return set(json.loads((folder / "task_type_stats.json").read_text()))


def profiles(wf) -> dict[str, tuple[float, int]]:
    return {t: (wf.node(t).profile.exec_ms, wf.node(t).profile.output_bytes) for t in wf}


def test_every_recipe_wfcommons_ships_is_offered_or_refused_with_a_reason():
    from wfcommons.wfchef import recipes

    shipped = {name[: -len("Recipe")].lower() for name in dir(recipes)
               if name.endswith("Recipe")}
    assert shipped == set(RECIPES) | set(BROKEN_RECIPES)
    assert set(RECIPES).isdisjoint(BROKEN_RECIPES)
    assert len(RECIPES) == 9


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_builds_an_instance_of_its_application(recipe):
    wf = wfchef(recipe, 200)
    assert 190 <= len(wf) <= 200
    assert wf.graph.number_of_edges() >= len(wf) - len(wf.roots)
    assert {wf.node(t).func.name for t in wf} <= recipe_types(recipe)
    assert all(wf.node(t).profile.exec_ms > 0 for t in wf)
    assert sum(wf.node(t).profile.output_bytes for t in wf) > 0
    assert wf.name == f"wfchef-{recipe}-200-s0"


@pytest.mark.parametrize("recipe", ["montage", "genome", "soykb"])
def test_sizes_are_within_the_recipe_s_tolerance(recipe):
    # WfChef adds whole sub-structures while one fits: never more tasks than asked for,
    # and short of it by less than one sub-structure
    wf = wfchef(recipe, 1000, seed=1)
    assert 980 <= len(wf) <= 1000


def test_the_smallest_instance_is_the_recipe_s_minimum():
    smallest = min_tasks("montage")
    assert smallest == 58
    assert len(wfchef("montage", smallest)) == smallest
    with pytest.raises(ValueError, match=r"recipe 'montage' cannot make 57 tasks: its smallest "
                                         r"instance has 58 tasks .*; ask for tasks >= 58"):
        wfchef("montage", 57)


def test_same_seed_same_workflow_other_seed_other_runtimes():
    a, b, c = wfchef("montage", 300, seed=7), wfchef("montage", 300, seed=7), \
        wfchef("montage", 300, seed=8)
    assert a.structure_hash == b.structure_hash
    assert list(a) == list(b) and set(a.graph.edges) == set(b.graph.edges)
    assert profiles(a) == profiles(b)
    assert wfchef_instance("montage", 300, seed=7) == wfchef_instance("montage", 300, seed=7)
    assert profiles(c) != profiles(a)
    assert c.structure_hash != a.structure_hash  # montage grows by sub-structures drawn at random


def test_same_seed_same_hash_in_another_process():
    code = ("from faasplan.workloads import wfchef; "
            "print(wfchef('cycles', 150, seed=2).structure_hash)")
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120)
        hashes.add(out.stdout.strip())
    assert hashes == {wfchef("cycles", 150, seed=2).structure_hash}


def test_the_caller_s_random_generators_are_left_alone():
    random.seed(11)
    np.random.seed(11)
    expected = (random.random(), np.random.random())
    random.seed(11)
    np.random.seed(11)
    wfchef("srasearch", 60, seed=5)
    assert (random.random(), np.random.random()) == expected


def test_file_names_come_from_the_tasks():
    doc = wfchef_instance("montage", 60)
    spec = doc["workflow"]["specification"]
    ids = {t["id"] for t in spec["tasks"]}
    for f in spec["files"]:
        assert f["id"].split(".", 1)[0] in ids, f
    assert "createdAt" not in doc and "author" not in doc
    writers = {f: t["id"] for t in spec["tasks"] for f in t["outputFiles"]}
    assert all(name.startswith(f"{tid}.") for name, tid in writers.items())


@pytest.mark.parametrize(("call", "message"), [
    (lambda: wfchef("montagee", 100), r"unknown recipe 'montagee'; choose from blast, bwa"),
    (lambda: wfchef("rnaseq", 100), r"'rnaseq' is not offered: .*no dependencies"),
    (lambda: wfchef("montage", 0), r"tasks must be an integer >= 1, got 0"),
    (lambda: wfchef("montage", True), r"tasks must be an integer >= 1, got True"),
    (lambda: wfchef("montage", "100"), r"tasks must be an integer >= 1, got '100'"),
    (lambda: wfchef("montage", 100, seed=-1), r"seed must be an integer >= 0, got -1"),
])
def test_bad_arguments_name_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wfcommons.wfchef", None)
    with pytest.raises(MissingExtraError, match=r"install the extra: pip install "
                                                r"'faasplan\[wfcommons\]'"):
        wfchef("montage", 100)
    assert main(["simulate", "wfchef:montage?tasks=100"]) == 2
    err = capsys.readouterr().err
    assert INSTALL_HINT in err and "Traceback" not in err


# -- CLI targets ----------------------------------------------------------------------------
def test_cli_target_simulates(capsys):
    assert main(["simulate", "wfchef:epigenomics?tasks=120&seed=4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workflow"] == "wfchef-epigenomics-120-s4"
    assert data["tasks"] == len(wfchef("epigenomics", 120, seed=4)) and data["makespan_ms"] > 0


def test_cli_target_is_a_scenario_with_defaults():
    loaded = load_target("wfchef:montage?tasks=100")
    section = loaded.scenario.workflow.wfchef
    assert section is not None and (section.recipe, section.tasks, section.seed) == \
        ("montage", 100, 0)
    assert build_workflow(loaded).structure_hash == wfchef("montage", 100).structure_hash


@pytest.mark.parametrize(("target", "message"), [
    ("wfchef:montage", r"no tasks=N: say how many tasks to generate"),
    ("wfchef:?tasks=100", r"no recipe after 'wfchef:'"),
    ("wfchef:montage?tasks=many", r"tasks must be an integer, got 'many'"),
    ("wfchef:montage?tasks=100&size=3", r"unknown or empty parameter 'size=3'"),
    ("wfchef:montage?tasks=100&seed=-2", r"workflow\.wfchef\.seed: .*greater than or equal"),
    ("wfchef:nope?tasks=100", r"unknown recipe 'nope'"),
    ("wfchef:montage?tasks=12", r"its smallest instance has 58 tasks"),
])
def test_bad_cli_targets_exit_2_naming_the_target(capsys, target, message):
    assert main(["simulate", target]) == 2
    err = capsys.readouterr().err
    assert f"faasplan simulate: error: {target}: " in err
    assert __import__("re").search(message, err), err
    assert "Traceback" not in err


# -- scenarios ------------------------------------------------------------------------------
def test_a_scenario_using_wfchef_compares(capsys, tmp_path):
    path = tmp_path / "genome.toml"
    path.write_text(SCENARIO.format(tasks=150))
    wf = build_workflow(load_scenario(path))
    assert wf.structure_hash == wfchef("genome", 150, seed=3).structure_hash
    assert validate_file(path) == []
    assert main(["compare", str(path), "--json", "--out", str(tmp_path / "out")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["planner"] for r in rows] == ["wukong", "heft"]
    assert all(r["makespan_p95_ms"] > 0 for r in rows)


@pytest.mark.parametrize(("table", "message"), [
    ('wfchef = { recipe = "genome" }', r"workflow\.wfchef\.tasks: Field required"),
    ('wfchef = { recipe = "genome", tasks = 100, size = 1 }',
     r"workflow\.wfchef\.size: unknown key"),
    ('wfchef = { recipe = "rnaseq", tasks = 100 }', r"'rnaseq' is not offered"),
    ('wfchef = { recipe = "genome", tasks = 100 }\nparams = { n = 1 }',
     r"params apply to workload/target; give wfchef its recipe"),
    ('wfchef = { recipe = "genome", tasks = 100 }\nprofile = true',
     r"a wfchef instance carries its recipe's runtimes"),
    ('wfchef = { recipe = "genome", tasks = 100 }\nworkload = "gemm"',
     r"give exactly one of workload, wfformat, target or wfchef"),
])
def test_bad_wfchef_tables_are_scenario_errors(tmp_path, capsys, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(f"[workflow]\n{table}\n")
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and __import__("re").search(message, err), err
    assert validate_file(path) != []


def test_validate_reports_too_few_tasks_for_the_recipe(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SCENARIO.format(tasks=10))
    problems = validate_file(path)
    assert [(p.key, p.message, p.fix) for p in problems] == [
        ("workflow.wfchef.tasks",
         "recipe 'genome' cannot make 10 tasks: its smallest instance has 52",
         "ask for tasks >= 52")]


def test_validate_reports_a_missing_extra(tmp_path, monkeypatch):
    path = tmp_path / "genome.toml"
    path.write_text(SCENARIO.format(tasks=100))
    monkeypatch.setitem(sys.modules, "wfcommons.wfchef", None)
    problems = validate_file(path)
    assert len(problems) == 1 and problems[0].key == "workflow.wfchef"
    assert INSTALL_HINT in problems[0].fix


@pytest.mark.slow
def test_a_10k_task_instance_simulates():
    wf = wfchef("montage", 10_000)
    assert 9_900 <= len(wf) <= 10_000
    trace = simulate(wf, seed=0)
    assert len(trace.tasks) == len(wf) and trace.makespan_ms > 0
    assert set(trace.tasks["function"]) == recipe_types("montage")
