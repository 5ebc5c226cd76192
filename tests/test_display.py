"""Seeing a workflow before planning it, and charts that display themselves in Jupyter."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from matplotlib.figure import Figure
from nbclient import NotebookClient

import faasplan
from faasplan import TaskProfile, Workflow, task
from faasplan.report import plot_dag
from faasplan.report.plots import ReportFigure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KERNEL_NAME = "faasplan-display-tests"


@task
def leaf(i: int) -> int:
    return i


@task
def join(*xs: int) -> int:
    return sum(xs)


def small() -> Workflow:
    """Three leaves, the slow one on the critical path, joined once."""
    leaves = [leaf(i, task_id=f"leaf-{i}", profile=TaskProfile(ms, 8))
              for i, ms in enumerate((10.0, 50.0, 20.0))]
    return Workflow(join(*leaves, task_id="join", profile=TaskProfile(5.0, 8)), name="small")


# -- Workflow.visualize / _repr_html_ ------------------------------------------------------
def test_visualize_draws_the_dag_without_a_plan() -> None:
    fig = small().visualize()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "small: 4 tasks, 3 edges, 2 functions"
    nodes = next(c for c in ax.collections if len(c.get_offsets()) == 4)
    # one colour per function: three leaves alike, the join different
    colours = [tuple(c) for c in nodes.get_facecolors()]
    assert len(set(colours)) == 2 and len(set(colours[:3])) == 1
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
        "critical path", "join", "leaf"]
    # the critical path runs through the slowest leaf
    red = [c for c in ax.collections if c.get_linewidths()[0] == 2.0]
    assert len(red) == 1
    (segment,) = red[0].get_segments()
    leaf_1 = nodes.get_offsets()[1]
    assert np.allclose(segment[0], leaf_1)
    assert {t.get_text() for t in ax.texts} == {"leaf-0", "leaf-1", "leaf-2", "join"}


def test_visualize_into_given_axes_and_with_a_title() -> None:
    host = Figure()
    ax = host.add_subplot()
    assert small().visualize(ax=ax, title="mine") is host
    assert ax.get_title() == "mine"


def test_visualize_a_large_trace_without_labels() -> None:
    wf = faasplan.workloads.tree_reduction(leaves=64)
    ax = wf.visualize().axes[0]
    assert len(ax.texts) == 0 and "127 tasks" in ax.get_title()


def test_plot_dag_with_a_plan_is_unchanged_by_the_optional_plan() -> None:
    wf = small()
    plan = faasplan.plan(wf, "wukong")
    assert plot_dag(wf, plan).axes[0].get_title().startswith("wukong: 4 tasks, 0 planned")


def test_repr_html_shows_a_summary_and_the_picture() -> None:
    page = small()._repr_html_()
    assert "<b>small</b>: 4 tasks, 3 edges, 3 roots, 1 sink" in page
    assert "leaf &times;3, join &times;1" in page
    (image,) = re.findall(r'<img alt="DAG of small" src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(image).startswith(PNG_MAGIC)


def test_repr_html_escapes_the_name() -> None:
    wf = Workflow(leaf(1), name="<a&b>")
    assert "<b>&lt;a&amp;b&gt;</b>" in wf._repr_html_()


# -- figures that display themselves ------------------------------------------------------
def test_report_figures_render_as_png() -> None:
    trace = faasplan.simulate(small())
    fig = trace.gantt()
    assert isinstance(fig, ReportFigure) and isinstance(fig, Figure)
    assert fig._repr_png_().startswith(PNG_MAGIC)
    assert len(fig.axes[0].get_yticks()) == len(trace.workers)
    assert isinstance(small().visualize(), ReportFigure)


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernelspec manager that knows one kernel: ipykernel on this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    (root / KERNEL_NAME).mkdir()
    (root / KERNEL_NAME / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "faasplan display tests", "language": "python",
        "metadata": {"debugger": False}}), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(root)])


def run_cells(sources: list[str], kernel_specs: KernelSpecManager) -> list[list[Any]]:
    """Execute ``sources`` in a fresh Jupyter kernel; the outputs of each cell."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=120,
                            resources={"metadata": {"path": str(Path.cwd())}})
    client.execute()
    return [cell.outputs for cell in nb.cells]


@pytest.mark.timeout(300)
def test_jupyter_displays_charts_and_workflows_without_matplotlib_inline(
        kernel_specs: KernelSpecManager) -> None:
    outputs = run_cells([
        "import faasplan\nwf = faasplan.workloads.tree_reduction(leaves=4)\nwf",
        "wf.visualize()",
        "trace = faasplan.simulate(wf)\ntrace.gantt()",
        "%matplotlib inline\ntrace.gantt()",
    ], kernel_specs)
    workflow, picture, gantt, gantt_inline = outputs
    (html_out,) = workflow
    assert "tree_reduction</b>: 7 tasks" in html_out["data"]["text/html"]
    assert "data:image/png;base64," in html_out["data"]["text/html"]
    for cell in (picture, gantt, gantt_inline):
        # exactly one displayed result, and it is a picture, not "<Figure size ...>"
        (result,) = cell
        png = base64.b64decode(result["data"]["image/png"])
        assert png.startswith(PNG_MAGIC)
