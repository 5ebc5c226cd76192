"""Command-line checks that need no run: the invoker flags, fit's run count, target help."""

from __future__ import annotations

import json

import pytest

from faasplan.cli import TARGET_HELP, BadInput, main, run_invoker
from faasplan.data import trace_path


@pytest.mark.parametrize(("invoker", "dask", "chosen"), [
    (None, None, "local"), ("local", None, "local"), (None, "tcp://h:8786", "dask"),
    ("dask", "tcp://h:8786", "dask"),
])
def test_the_invoker_follows_the_flags(invoker, dask, chosen):
    assert run_invoker(invoker, dask) == chosen


def test_contradicting_invoker_flags_are_refused():
    with pytest.raises(BadInput, match=r"--invoker dask needs .* add --dask ADDRESS"):
        run_invoker("dask", None)
    with pytest.raises(BadInput, match="--dask tcp://h:1 runs the sandboxes on Dask, but "
                                       "--invoker local"):
        run_invoker("local", "tcp://h:1")


@pytest.mark.parametrize(("argv", "message"), [
    (["--invoker", "dask"], "--invoker dask needs the cluster's scheduler"),
    (["--invoker", "local", "--dask", "tcp://127.0.0.1:1"], "but --invoker local asks"),
    (["--invoker", "lambda"], "argument --invoker: invalid choice: 'lambda'"),
])
def test_bad_invoker_flags_exit_2_before_any_work(capsys, argv, message):
    assert main(["run", "faasplan.workloads:gemm", *argv]) == 2
    assert message in capsys.readouterr().err


def test_run_with_invoker_local(capsys):
    code = main(["run", "faasplan.workloads:tree_reduction", "--invoker", "local", "--json",
                 "--no-files", "--timeout", "120"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["tasks"] > 1 and data["makespan_ms"] > 0


def test_fit_on_a_single_run_exits_2_and_says_why(capsys):
    path = str(trace_path("montage_58t.json"))
    assert main(["fit", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}: metrics of only 1 run" in err
    assert "needs at least 2 runs" in err and "Traceback" not in err


def test_target_help_names_every_kind_of_target(capsys):
    assert "wfchef:RECIPE?tasks=N" in TARGET_HELP
    for command in ("simulate", "run", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "wfchef:RECIPE?tasks=N" in text, command
        assert text.count("wfchef:RECIPE") == 1, command
