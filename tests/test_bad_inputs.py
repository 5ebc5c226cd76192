"""A newcomer's bad inputs: every one exits 2 with a message naming the file, key or flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faasplan.cli import main
from faasplan.data import trace_path

GOOD = '[workflow]\nworkload = "tree_reduction"\nparams = { leaves = 4 }\n'


def scenario(tmp: Path, text: str, name: str = "s.toml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def trace(tmp: Path, edit, name: str = "t.json") -> str:  # type: ignore[no-untyped-def]
    doc = json.loads(trace_path("montage_58t").read_text())
    edit(doc)
    path = tmp / name
    path.write_text(json.dumps(doc))
    return str(path)


def spec_task(doc: dict, i: int = 0) -> dict:
    return doc["workflow"]["specification"]["tasks"][i]


def exec_task(doc: dict, i: int = 0) -> dict:
    return doc["workflow"]["execution"]["tasks"][i]


# (id, argv builder(tmp) -> list[str], text that must appear in the message)
CASES = [
    # files
    ("missing scenario", lambda t: ["compare", str(t / "nope.toml")], "nope.toml"),
    ("missing trace", lambda t: ["simulate", str(t / "nope.json")], "nope.json"),
    ("empty scenario", lambda t: ["compare", scenario(t, "")], "s.toml"),
    ("broken toml", lambda t: ["compare", scenario(t, "[workflow\n")], "s.toml"),
    ("empty trace", lambda t: ["simulate", scenario(t, "", "e.json")], "e.json"),
    ("broken json", lambda t: ["simulate", scenario(t, "{", "b.json")], "b.json"),
    ("json list", lambda t: ["simulate", scenario(t, "[1]", "l.json")], "l.json"),
    ("unknown target", lambda t: ["simulate", "whatever"], "whatever"),
    ("missing metrics", lambda t: ["fit", str(t / "m.parquet")], "m.parquet"),
    ("not parquet", lambda t: ["fit", scenario(t, "x", "m.parquet")], "m.parquet"),
    ("history not a history", lambda t: ["fit", scenario(t, "x", "h.txt")], "h.txt"),
    ("missing plan file", lambda t: ["run", "faasplan.workloads:gemm", "--plan",
                                     str(t / "p.json")], "p.json"),
    ("missing calibrate input", lambda t: ["calibrate", str(t / "c.parquet")], "c.parquet"),
    # module:function
    ("no module", lambda t: ["simulate", "no_such_mod_xyz:build"], "no_such_mod_xyz"),
    ("no function", lambda t: ["simulate", "faasplan.workloads:no_such"], "no_such"),
    ("not a workflow", lambda t: ["simulate", "faasplan.workloads:REGISTRY"], "REGISTRY"),
    # scenario keys and types
    ("unknown section", lambda t: ["compare", scenario(t, GOOD + "[colour]\nx = 1\n")],
     "colour"),
    ("unknown key", lambda t: ["compare", scenario(t, GOOD + "[scenario]\nspeed = 1\n")],
     "scenario.speed"),
    ("replicates text", lambda t: ["compare", scenario(
        t, GOOD + '[scenario]\nreplicates = "many"\n')], "scenario.replicates"),
    ("replicates zero", lambda t: ["compare", scenario(
        t, GOOD + "[scenario]\nreplicates = 0\n")], "scenario.replicates"),
    ("negative seed", lambda t: ["compare", scenario(t, GOOD + "[scenario]\nseed = -1\n")],
     "scenario.seed"),
    ("no workflow", lambda t: ["compare", scenario(t, "[scenario]\nseed = 1\n")], "workflow"),
    ("unknown workload", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "teleport"\n')], "teleport"),
    ("bad param", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { leaves = -4 }\n')], "leaves"),
    ("unknown param", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { branches = 4 }\n')],
     "branches"),
    ("missing wfformat", lambda t: ["compare", scenario(
        t, '[workflow]\nwfformat = "gone.json"\n')], "gone.json"),
    ("two workflow kinds", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "gemm"\ntarget = "faasplan.workloads:gemm"\n')],
     "workflow"),
    ("unknown platform key", lambda t: ["compare", scenario(
        t, GOOD + "[platform]\nwarp = 9\n")], "platform"),
    ("negative cold start", lambda t: ["compare", scenario(
        t, GOOD + "[platform]\ncold_start_ms = -5\n")], "cold_start_ms"),
    ("platform text", lambda t: ["compare", scenario(
        t, GOOD + '[platform]\ncold_start_ms = "slow"\n')], "cold_start_ms"),
    ("missing platform file", lambda t: ["compare", scenario(
        t, GOOD + '[platform]\nfile = "pf.toml"\n')], "pf.toml"),
    ("negative noise", lambda t: ["compare", scenario(
        t, GOOD + "[history]\nnoise = -1\n")], "history.noise"),
    ("missing metrics key", lambda t: ["compare", scenario(
        t, GOOD + '[history]\nmetrics = "none.parquet"\n')], "none.parquet"),
    ("missing history trace", lambda t: ["compare", scenario(
        t, GOOD + '[history]\ntraces = ["none.json"]\n')], "none.json"),
    ("bad memory sizes", lambda t: ["compare", scenario(
        t, GOOD + "[history]\nmemory_sizes = [-1]\n")], "memory_sizes"),
    ("unknown planner key", lambda t: ["compare", scenario(
        t, GOOD + '[planning]\nplanners = ["fastest"]\n')], "fastest"),
    ("bad sla key", lambda t: ["compare", scenario(t, GOOD + '[planning]\nsla = "p100"\n')],
     "sla"),
    ("unknown planner option", lambda t: ["compare", scenario(
        t, GOOD + "[planning.options.sim-guided]\ntime_budget = 1.0\n")], "time_budget"),
    ("planner option type", lambda t: ["compare", scenario(
        t, GOOD + '[planning.options.sim-guided]\ntime_budget_s = "two"\n')],
     "time_budget_s"),
    # flags
    ("unknown planner flag", lambda t: ["simulate", "faasplan.workloads:gemm", "--planner",
                                        "foo"], "--planner"),
    ("unknown planners flag", lambda t: ["compare", "faasplan.workloads:gemm", "--planners",
                                         "wukong,foo"], "--planners"),
    ("negative seed flag", lambda t: ["simulate", "faasplan.workloads:gemm", "--seed", "-1"],
     "-1"),
    ("text seed flag", lambda t: ["simulate", "faasplan.workloads:gemm", "--seed", "abc"],
     "abc"),
    ("zero replicates", lambda t: ["simulate", "faasplan.workloads:gemm", "--replicates", "0"],
     "0"),
    ("sla p100 flag", lambda t: ["simulate", "faasplan.workloads:gemm", "--sla", "p100"],
     "p100"),
    ("sla text flag", lambda t: ["plan", "faasplan.workloads:gemm", "--planner", "heft",
                                 "--sla", "fast"], "fast"),
    ("bad redis url", lambda t: ["run", "faasplan.workloads:gemm", "--redis", "notaurl"],
     "notaurl"),
    ("negative timeout", lambda t: ["run", "faasplan.workloads:gemm", "--timeout", "-3"],
     "-3"),
    ("unknown flag", lambda t: ["simulate", "faasplan.workloads:gemm", "--colour", "red"],
     "--colour"),
    ("unknown command", lambda t: ["teleport"], "teleport"),
    ("bad grid", lambda t: ["sweep", scenario(t, GOOD), "--grid", "nokeyvalue"],
     "nokeyvalue"),
    ("grid unknown key", lambda t: ["sweep", scenario(t, GOOD), "--grid",
                                    "workflow.colour=1,2"], "colour"),
    ("compare without target", lambda t: ["compare"], "TARGET"),
    ("predict without history", lambda t: ["predict", str(trace_path("montage_58t"))],
     "--history"),
    ("predict other type", lambda t: ["predict", str(trace_path("montage_58t")), "--history",
                                      str(trace_path("blast_43t"))], "share no function"),
    # traces
    ("trace no workflow", lambda t: ["simulate", trace(t, lambda d: d.pop("workflow"))],
     "workflow"),
    ("trace bad version", lambda t: ["simulate", trace(
        t, lambda d: d.update(schemaVersion="9.9"))], "schemaVersion"),
    ("trace no version", lambda t: ["simulate", trace(t, lambda d: d.pop("schemaVersion"))],
     "schemaVersion"),
    ("trace no tasks", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"]["specification"].pop("tasks"))], "tasks"),
    ("trace empty tasks", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"]["specification"].update(tasks=[]))], "no tasks"),
    ("trace task without id", lambda t: ["simulate", trace(
        t, lambda d: spec_task(d).pop("id"))], "id"),
    ("trace runtime text", lambda t: ["simulate", trace(
        t, lambda d: exec_task(d).update(runtimeInSeconds="3"))], "runtimeInSeconds"),
    ("trace negative runtime", lambda t: ["simulate", trace(
        t, lambda d: exec_task(d).update(runtimeInSeconds=-1))], "runtimeInSeconds"),
    ("trace huge size", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"]["specification"]["files"][0].update(sizeInBytes=-5))],
     "sizeInBytes"),
    ("trace unknown parent", lambda t: ["simulate", trace(
        t, lambda d: spec_task(d, 3)["parents"].append("ghost"))], "ghost"),
    ("trace unknown file", lambda t: ["simulate", trace(
        t, lambda d: spec_task(d, 3)["inputFiles"].append("ghost.fits"))], "ghost.fits"),
    ("trace no execution", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"].pop("execution"))], "execution"),
    ("trace as history zero runtimes", lambda t: ["fit", trace(
        t, lambda d: [e.update(runtimeInSeconds=0) for e in
                      d["workflow"]["execution"]["tasks"]])], "runtimeInSeconds"),
    ("validate a broken trace", lambda t: ["validate", scenario(t, "{", "v.json")], "v.json"),
    # sizes beyond any machine, nesting beyond the parser, workloads beyond memory
    ("trace size 1e308", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"]["specification"]["files"][0].update(sizeInBytes=1e308))],
     "files[0].sizeInBytes"),
    ("trace size 2**80", lambda t: ["simulate", trace(
        t, lambda d: d["workflow"]["specification"]["files"][0].update(sizeInBytes=2**80))],
     "files[0].sizeInBytes"),
    ("trace runtime 1e308", lambda t: ["simulate", trace(
        t, lambda d: exec_task(d).update(runtimeInSeconds=1e308))], "runtimeInSeconds"),
    ("deeply nested json list", lambda t: ["simulate", scenario(
        t, "[" * 100_000 + "]" * 100_000, "deep.json")], "deep.json"),
    ("deeply nested json object", lambda t: ["simulate", scenario(
        t, '{"a":' * 50_000 + "1" + "}" * 50_000, "deep2.json")], "deep2.json"),
    ("nested trace beyond the bound", lambda t: ["simulate", trace(
        t, lambda d: d.update(extra=json.loads("[" * 100 + "]" * 100)))], "extra"),
    ("param 2**80", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { leaf_size = '
           f'{2**80} }}\n')], "workflow.params.leaf_size"),
    ("param 1e308", lambda t: ["compare", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { leaf_size = 1e308 }\n')],
     "leaf_size"),
    ("leaves 1e8", lambda t: ["simulate", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { leaves = 1e8 }\n')],
     "leaves"),
    ("leaves 100000000", lambda t: ["simulate", scenario(
        t, '[workflow]\nworkload = "tree_reduction"\nparams = { leaves = 100000000 }\n')],
     "workflow.params"),
    ("gemm beyond memory", lambda t: ["simulate", scenario(
        t, '[workflow]\nworkload = "gemm"\nparams = { n = 100000000 }\n')],
     "workflow.params"),
    ("memory size 2**80", lambda t: ["compare", scenario(
        t, GOOD + f"[history]\nmemory_sizes = [{2**80}]\n")], "history.memory_sizes[0]"),
    ("cold start 1e308", lambda t: ["compare", scenario(
        t, GOOD + "[platform]\ncold_start_ms = 1e308\n")], "platform.cold_start_ms"),
    ("seed 2**80", lambda t: ["compare", scenario(
        t, GOOD + f"[scenario]\nseed = {2**80}\n")], "scenario.seed"),
    ("negative seed shown with its key", lambda t: ["compare", scenario(
        t, GOOD + "[scenario]\nseed = -39595\n")], "scenario.seed"),
    ("unknown wukong option", lambda t: ["compare", scenario(
        t, GOOD + "[planning.options.wukong]\nfoo = 1\n")], "planning.options.wukong.foo"),
]


@pytest.mark.parametrize(("case", "argv", "shown"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_what_is_wrong(case, argv, shown, tmp_path, capsys):
    code = main(argv(tmp_path))
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{err}"
    assert "Traceback" not in err + out
    assert shown in err, f"{case}: {shown!r} not in {err!r}"


def test_the_table_is_a_newcomers_first_hour():
    assert len(CASES) >= 60
