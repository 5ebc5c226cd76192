"""Plots and the HTML report, on real simulator traces of small workflows."""

from __future__ import annotations

import base64
import dataclasses
import html as html_lib
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

import faasplan
from faasplan.data import trace_path
from faasplan.experiments import planning as api
from faasplan.experiments.compare import Comparison, Setup
from faasplan.planners import Plan
from faasplan.predictors import Predictor
from faasplan.report import (
    best_planner,
    layered_layout,
    pareto_front,
    planner_points,
    plot_cost_vs_makespan,
    plot_dag,
    plot_gantt,
    plot_makespan_cdf,
    predicted_exec_ms,
    write_report,
)
from faasplan.report import html as report_html
from faasplan.simulator import GroundTruth, Platform, simulate_many
from faasplan.worker import Placement
from faasplan.workloads import tree_reduction

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLANNERS = ("wukong", "uniform", "non-uniform")
REPLICATES = 6


def build_comparison(leaves: int = 8) -> Comparison:
    """Plan a tree reduction with three planners and score each on the ground truth."""
    wf = tree_reduction(leaves=leaves)
    platform = Platform()
    truth = GroundTruth(wf, platform, noise=0.2)
    predictor = Predictor.empty(api.io_hints(wf))
    plans = {name: api.plan(wf, name, predictor, platform, seed=1) for name in PLANNERS}
    rows, summary, traces = [], [], {}
    for name, plan in plans.items():
        runs = simulate_many(wf, plan, platform, seed=5, replicates=REPLICATES, behaviour=truth)
        traces[name] = runs[0]
        rows += [{"planner": name, "replicate": r, "makespan_ms": t.makespan_ms,
                  "cost_usd": t.cost_usd, "cold_starts": t.cold_starts,
                  "storage_bytes": t.storage_bytes} for r, t in enumerate(runs)]
        makespans = [t.makespan_ms for t in runs]
        summary.append({"planner": name,
                        "makespan_p50_ms": float(np.percentile(makespans, 50)),
                        "makespan_p95_ms": float(np.percentile(makespans, 95)),
                        "makespan_mean_ms": float(np.mean(makespans)),
                        "cost_usd": float(np.mean([t.cost_usd for t in runs])),
                        "workers": len(runs[0].workers), "notes": "; ".join(plan.notes)})
    setup = Setup("tree-demo", wf, platform, truth, predictor, PLANNERS, "p95", REPLICATES,
                  seed=5, history_records=0)
    return Comparison(setup, pd.DataFrame(rows), pd.DataFrame(summary), plans, traces)


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return build_comparison()


@pytest.fixture(scope="module")
def report_dir(comparison: Comparison, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    out.mkdir(parents=True)
    (out / "mine.txt").write_text("user data")
    page = write_report(comparison, out, dpi=60)
    assert page == out / "report.html"
    return out


# -- pareto_front ---------------------------------------------------------------------------
def test_pareto_front_empty() -> None:
    assert pareto_front([]) == []


def test_pareto_front_literal_points() -> None:
    points = [(3.0, 5.0), (1.0, 9.0), (2.0, 4.0), (4.0, 1.0), (2.5, 4.0), (5.0, 1.0)]
    # (3,5) is beaten by (2,4); (2.5,4) ties on y but costs more; (5,1) likewise.
    assert pareto_front(points) == [1, 2, 3]


def test_pareto_front_keeps_duplicates_and_skips_nan() -> None:
    points = [(2.0, 2.0), (float("nan"), 0.0), (2.0, 2.0), (1.0, 3.0), (2.0, 3.0)]
    assert pareto_front(points) == [3, 0, 2]


def test_pareto_front_single_and_all_on_front() -> None:
    assert pareto_front([(7.0, 7.0)]) == [0]
    assert pareto_front([(3.0, 1.0), (1.0, 3.0), (2.0, 2.0)]) == [1, 2, 0]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_pareto_front_matches_the_definition(raw: list[tuple[int, int]]) -> None:
    points = [(float(x), float(y)) for x, y in raw]

    def dominated(i: int) -> bool:
        x, y = points[i]
        return any(a <= x and b <= y and (a, b) != (x, y) for a, b in points)

    front = pareto_front(points)
    assert sorted(front) == [i for i in range(len(points)) if not dominated(i)]
    xs = [points[i][0] for i in front]
    assert xs == sorted(xs)


# -- makespan CDF and cost vs makespan --------------------------------------------------------
def test_makespan_cdf_one_curve_per_planner(comparison: Comparison) -> None:
    fig = plot_makespan_cdf(comparison.runs)
    lines = fig.axes[0].get_lines()
    # a curve identical to an earlier one is labelled "name (= earlier)"
    assert [ln.get_label().split(" (= ")[0] for ln in lines] == list(PLANNERS)
    for line, name in zip(lines, PLANNERS, strict=True):
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        runs = comparison.runs
        expected = np.sort(runs.loc[runs["planner"] == name, "makespan_ms"])
        np.testing.assert_allclose(x[1:], expected)
        assert y[0] == 0.0 and y[-1] == 1.0 and np.all(np.diff(y) > 0)


def test_makespan_cdf_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"plot_makespan_cdf needs columns \['makespan_ms'\]"):
        plot_makespan_cdf(pd.DataFrame({"planner": ["a"], "makespan": [1.0]}))


def test_planner_points_reduce_runs_like_the_summary(comparison: Comparison) -> None:
    from_runs = planner_points(comparison.runs).set_index("planner")
    summary = comparison.summary.set_index("planner")
    pd.testing.assert_series_equal(from_runs["makespan_p95_ms"], summary["makespan_p95_ms"])
    pd.testing.assert_series_equal(from_runs["cost_usd"], summary["cost_usd"])
    means = planner_points(comparison.runs, "makespan_mean_ms").set_index("planner")
    pd.testing.assert_series_equal(means["makespan_mean_ms"], summary["makespan_mean_ms"])
    with pytest.raises(ValueError, match="makespan_worst_ms"):
        planner_points(comparison.runs, "makespan_worst_ms")


def test_cost_vs_makespan_highlights_the_front() -> None:
    summary = pd.DataFrame({"planner": ["a", "b", "c", "d"],
                            "cost_usd": [1.0, 2.0, 3.0, 0.5],
                            "makespan_p95_ms": [50.0, 20.0, 30.0, 90.0]})
    ax = plot_cost_vs_makespan(summary).axes[0]
    by_label = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    front = by_label["Pareto front"].get_offsets()
    dominated = by_label["dominated"].get_offsets()
    assert sorted(map(tuple, np.asarray(front).tolist())) == [(0.5, 90.0), (1.0, 50.0),
                                                              (2.0, 20.0)]
    assert np.asarray(dominated).tolist() == [[3.0, 30.0]]
    assert sorted(t.get_text() for t in ax.texts) == ["a", "b", "c", "d"]


def test_cost_vs_makespan_from_runs_draws_every_run(comparison: Comparison) -> None:
    ax = plot_cost_vs_makespan(comparison.runs).axes[0]
    runs = next(c for c in ax.collections if c.get_label() == "runs")
    assert len(runs.get_offsets()) == len(PLANNERS) * REPLICATES
    labelled = ", ".join(t.get_text() for t in ax.texts)
    assert all(name in labelled for name in PLANNERS)


# -- Gantt ---------------------------------------------------------------------------------
def test_gantt_one_lane_per_worker_and_a_bar_per_phase(comparison: Comparison) -> None:
    trace = comparison.traces["uniform"]
    fig = plot_gantt(trace)
    ax = fig.axes[0]
    lanes = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(lanes) == sorted(set(trace.tasks["worker"]) | set(trace.workers["worker"]))
    t, w = trace.tasks, trace.workers
    expected = (int(((t["exec_start_ms"] - t["start_ms"]) > 0).sum())
                + int(((t["exec_end_ms"] - t["exec_start_ms"]) > 0).sum())
                + int(((t["end_ms"] - t["exec_end_ms"]) > 0).sum())
                + int((w["startup_ms"] > 0).sum()))
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert sum(len(c.get_paths()) for c in polys) == expected
    assert [h.get_text() for h in ax.get_legend().get_texts()] == [
        "start-up", "inputs", "execution", "upload / delegation"]
    assert ax.get_xlim()[1] >= trace.makespan_ms


def test_gantt_draws_into_given_axes(comparison: Comparison) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_gantt(comparison.traces["wukong"], ax=ax, title="mine") is fig
    assert ax.get_title() == "mine"
    sub_ax = fig.subfigures(1, 2)[1].add_subplot()
    assert plot_makespan_cdf(comparison.runs, ax=sub_ax) is fig


def test_gantt_names_missing_columns(comparison: Comparison) -> None:
    class Bare:
        tasks = comparison.traces["wukong"].tasks.drop(columns=["worker"])

    with pytest.raises(ValueError, match=r"plot_gantt needs columns \['worker'\]"):
        plot_gantt(Bare())


# -- DAG -----------------------------------------------------------------------------------
def test_layered_layout_rows_and_parent_order() -> None:
    import networkx as nx

    g = nx.DiGraph([("a", "c"), ("b", "c"), ("c", "d"), ("a", "d")])
    assert layered_layout(g) == {"a": (0.25, 0.0), "b": (0.75, 0.0), "c": (0.5, -1.0),
                                 "d": (0.5, -2.0)}
    crossed = nx.DiGraph()
    crossed.add_nodes_from(["a", "b", "x", "y"])
    crossed.add_edges_from([("a", "y"), ("b", "x")])
    pos = layered_layout(crossed)
    assert pos["y"] == (0.25, -1.0) and pos["x"] == (0.75, -1.0)


def test_dag_colours_workers_and_marks_the_critical_path(comparison: Comparison) -> None:
    wf, plan = comparison.setup.workflow, comparison.plans["uniform"]
    ax = plot_dag(wf, plan).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(wf.topological_order)
    weights = predicted_exec_ms(plan)
    assert weights is not None
    assert weights == dict(zip(plan.predicted.tasks["task"], plan.predicted.tasks["exec_ms"],
                               strict=True))
    _, path = wf.critical_path(weights)
    red = next(c for c in ax.collections if isinstance(c, LineCollection)
               and np.allclose(c.get_colors()[0], to_rgba("#d62728")))
    pos = layered_layout(wf.graph)
    assert [seg.tolist() for seg in red.get_segments()] == [
        [list(pos[a]), list(pos[b])] for a, b in pairwise(path)]
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    colours = {tuple(c) for c in nodes.get_facecolors()}
    assert len(colours) == len(plan.workers)


def test_dag_flexible_tasks_are_grey(comparison: Comparison) -> None:
    ax = plot_dag(comparison.setup.workflow, comparison.plans["wukong"]).axes[0]
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    assert {tuple(c) for c in nodes.get_facecolors()} == {to_rgba("0.6")}


def test_dag_without_predicted_trace_and_with_missing_task(comparison: Comparison) -> None:
    wf = comparison.setup.workflow
    bare = Plan("by-hand", {t: Placement(None, 512 * (1 + i % 3)) for i, t in enumerate(wf)})
    assert predicted_exec_ms(bare) is None
    nodes = next(c for c in plot_dag(wf, bare).axes[0].collections
                 if isinstance(c, PathCollection))
    assert len(set(np.round(nodes.get_sizes(), 6))) == 3
    partial = Plan("partial", {t: Placement(None, 512) for t in wf.topological_order[1:]})
    with pytest.raises(KeyError, match=f"no placement for task '{wf.topological_order[0]}'"):
        plot_dag(wf, partial)


def test_dag_of_montage_1738_tasks_is_fast() -> None:
    wf = faasplan.load_wfformat(trace_path("montage_1738t.json"))
    plan = api.plan(wf, "wukong")
    started = time.perf_counter()
    fig = plot_dag(wf, plan)
    fig.savefig(Path("/dev/null"), format="png", dpi=50)
    assert time.perf_counter() - started < 5.0
    ax = fig.axes[0]
    assert len(ax.texts) == 0
    nodes = next(c for c in ax.collections if isinstance(c, PathCollection))
    assert len(nodes.get_offsets()) == len(wf) == 1738


# -- best planner and the report ----------------------------------------------------------------
def test_best_planner_by_sla_then_cost() -> None:
    summary = pd.DataFrame({"planner": ["a", "b", "c"], "makespan_p95_ms": [5.0, 4.0, 4.0],
                            "makespan_mean_ms": [1.0, 2.0, 3.0], "cost_usd": [1.0, 3.0, 2.0]})
    assert best_planner(summary, "p95") == "c"
    assert best_planner(summary, "average") == "a"
    assert best_planner(summary, "p42") == "c"  # no such column: falls back to p95
    with pytest.raises(ValueError, match="no planners"):
        best_planner(summary.iloc[:0])


def test_report_writes_every_file(comparison: Comparison, report_dir: Path) -> None:
    names = ["runs.csv", "runs.parquet", "summary.csv", "makespan_cdf.png",
             "cost_vs_makespan.png", "report.html"]
    names += [f"gantt_{p}.png" for p in PLANNERS] + [f"dag_{p}.png" for p in PLANNERS]
    names += [f"plans/{p}.json" for p in PLANNERS]
    for name in names:
        path = report_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_SIGNATURE, name
    assert (report_dir / "mine.txt").read_text() == "user data"
    pd.testing.assert_frame_equal(pd.read_parquet(report_dir / "runs.parquet"), comparison.runs)
    for name, plan in comparison.plans.items():
        assert dict(Plan.load(report_dir / "plans" / f"{name}.json").placements) == dict(
            plan.placements)


def test_report_html_is_self_contained(comparison: Comparison, report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == page.count("<img") == 2 + 2 * len(PLANNERS)
    assert base64.b64decode(images[0]) == (report_dir / "cost_vs_makespan.png").read_bytes()
    for text in (*PLANNERS, "tree-demo", "tree_reduction (15 tasks, 14 edges)", "p95",
                 f"<dd>{REPLICATES}</dd>", "0 metrics records", "no metrics history"):
        assert text in page, text
    best = best_planner(comparison.summary)
    assert f'<tr class="best"><td>{best}</td>' in page


def test_report_draws_only_the_best_dag_for_large_workflows(
        comparison: Comparison, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_html, "ALL_DAGS_MAX_TASKS", len(comparison.setup.workflow) - 1)
    write_report(comparison, tmp_path, dpi=40)
    assert [p.name for p in tmp_path.glob("dag_*.png")] == [
        f"dag_{best_planner(comparison.summary)}.png"]


def test_importing_and_reporting_never_loads_pyplot(tmp_path: Path) -> None:
    code = ("import sys, faasplan.report, matplotlib\n"
            "from faasplan.report import plot_makespan_cdf\n"
            "import pandas as pd\n"
            "fig = plot_makespan_cdf(pd.DataFrame({'planner': ['a'], 'makespan_ms': [1.0]}))\n"
            f"fig.savefig({str(tmp_path / 'x.png')!r})\n"
            "print('matplotlib.pyplot' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- a readable report: the summary fits, the setting is stated, curves stay visible --------
def test_makespan_cdf_keeps_identical_curves_apart() -> None:
    runs = pd.DataFrame({"planner": ["a"] * 20 + ["b"] * 20 + ["c"] * 20,
                         "makespan_ms": [*range(20), *range(20), *range(5, 25)]})
    lines = plot_makespan_cdf(runs).axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["a", "b (= a)", "c"]
    assert len({ln.get_linestyle() for ln in lines}) == 3
    assert len({ln.get_marker() for ln in lines}) == 3
    # the markers of the identical curves sit on different runs
    a, b = (ln.get_markevery() for ln in lines[:2])
    assert a != b and a[1] == b[1] == 2  # type: ignore[index]


def test_makespan_cdf_legend_says_so() -> None:
    runs = pd.DataFrame({"planner": ["wukong", "wukong-opt"], "makespan_ms": [5.0, 5.0]})
    legend = plot_makespan_cdf(runs).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["wukong", "wukong-opt (= wukong)"]


def full_summary(planners: int = 8) -> pd.DataFrame:
    """A summary with every column compare writes and values as large as montage_1738t's."""
    row = {"makespan_p50_ms": 124_879.65, "makespan_p95_ms": 127_566.27,
           "makespan_p99_ms": 127_809.69, "makespan_mean_ms": 125_157.48,
           "predicted_makespan_ms": 121_543.41, "predicted_p50_ms": 119_219.38,
           "predicted_p95_ms": 121_543.41, "predicted_p99_ms": 122_658.73,
           "predicted_cost_usd": 0.27723871342, "cost_usd": 0.28796507732, "cold_starts": 1502.0,
           "storage_bytes": 4_073_528_908.0, "workers": 1502, "planning_ms": 39_445.64,
           "replicates": 20, "notes": "a long note that the table leaves out"}
    names = ["wukong", "wukong-opt", "uniform", "uniform-opt", "non-uniform",
             "non-uniform-opt", "heft", "sim-guided"][:planners]
    return pd.DataFrame([{"planner": n, **row} for n in names])


def min_table_width_px(table_html: str, font_px: float = 16 * 0.85) -> float:
    """Narrowest width a browser can give the table: per column, its longest unbreakable
    text (a header wraps at spaces, a cell never), at a generous 0.6 em per character,
    plus padding and border."""
    def texts(row: str, tag: str) -> list[tuple[str, int]]:
        out = []
        for attrs, text in re.findall(rf"<{tag}([^>]*)>(.*?)</{tag}>", row):
            span = re.search(r'colspan="(\d+)"', attrs)
            out.append((html_lib.unescape(text), int(span.group(1)) if span else 1))
        return out

    head = re.search(r"<thead>(.*?)</thead>", table_html).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table_html).group(1)
    head_rows = re.findall(r"<tr>(.*?)</tr>", head)
    # leaf header of each column: rowspan=2 cells of the first row and the second row's cells
    leaves: list[str] = []
    second = iter(texts(head_rows[1], "th")) if len(head_rows) > 1 else iter(())
    for text, span in texts(head_rows[0], "th"):
        leaves += [text] if span == 1 else [next(second)[0] for _ in range(span)]
    widths = [max(len(w) for w in text.split()) for text in leaves]
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body):
        for i, (text, _) in enumerate(texts(row, "td")):
            widths[i] = max(widths[i], len(text))
    padding, border = 2 * 0.5 * font_px, 1.0
    return sum(w * 0.6 * font_px + padding + border for w in widths)


def test_summary_table_fits_a_1400px_window() -> None:
    table = report_html._table(full_summary(), "heft")
    # the page is 1400 px wide at most, less 1 em of padding on each side
    assert min_table_width_px(table) < 1400 - 2 * 16
    # and were it ever wider, it scrolls instead of hiding columns
    assert table.startswith('<div class="table-wrap">')
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", report_html._CSS)


def test_summary_table_groups_its_headers() -> None:
    table = report_html._table(full_summary(2), None)
    assert '<th colspan="4">simulated makespan (ms)</th>' in table
    assert '<th colspan="4">predicted makespan (ms)</th>' in table
    assert '<th colspan="2">cost (USD)</th>' in table
    assert '<th title="makespan_p95_ms">p95</th>' in table
    assert '<th rowspan="2" title="storage_bytes">storage (MB)</th>' in table
    assert "<td>127,566</td>" in table and "<td>4,073.5</td>" in table
    assert "<td>0.2772</td>" in table and "a long note" not in table


def test_report_states_platform_version_and_date(comparison: Comparison,
                                                 tmp_path: Path) -> None:
    setup = comparison.setup
    changed = dataclasses.replace(setup, platform=setup.platform.replace(cold_start_ms=400.0))
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    page = write_report(dataclasses.replace(comparison, setup=changed), tmp_path, dpi=30,
                        generated=when).read_text()
    assert f"<dt>faasplan</dt><dd>{faasplan.__version__}</dd>" in page
    assert "<dt>generated</dt><dd>2026-03-04T05:06:07+00:00</dd>" in page
    assert "<h2>Platform</h2>" in page
    for field in dataclasses.fields(Platform):
        assert f"<td>{field.name}</td>" in page, field.name
    assert '<td>cold_start_ms</td><td class="changed">400</td>' in page
    assert "<td>warm_start_ms</td><td>8</td>" in page
    assert "<td>memory_sizes_mb</td><td>512, 1024, 1769, 2048, 3008, 4096, 10240</td>" in page
