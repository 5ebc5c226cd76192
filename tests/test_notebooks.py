"""Every notebook in notebooks/ is stored clean and runs top to bottom with small parameters.

A notebook's first code cell is tagged ``parameters`` and holds its size knobs. Small values
for the test live in the notebook's own metadata, ``metadata["faasplan"]["test_parameters"]``
(a JSON object of knob name -> value); they are injected as a new cell right after the
parameters cell, as papermill does, so the defaults stay what a reader runs. A notebook
without test parameters runs with its defaults.

The kernel is the interpreter running pytest (a kernelspec written to a temporary
directory), so the notebooks see the same environment and installed faasplan as the tests,
whatever kernelspecs the machine has.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "faasplan-notebook-tests"
CELL_TIMEOUT_S = 300
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

pytestmark = pytest.mark.timeout(600)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _parameters_index(nb: nbformat.NotebookNode, name: str) -> int:
    """Index of the first code cell, which must be tagged ``parameters``."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    assert code, f"{name}: has no code cell"
    first = nb.cells[code[0]]
    tags = first.get("metadata", {}).get("tags", [])
    assert PARAMETERS_TAG in tags, (
        f"{name}: the first code cell must be tagged {PARAMETERS_TAG!r} (cell metadata "
        f"tags), got tags {tags}")
    return code[0]


def _assigned_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _test_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    meta = nb.metadata.get("faasplan", {})
    return dict(meta.get("test_parameters", {}))


def _injected_cell(params: dict[str, Any]) -> nbformat.NotebookNode:
    lines = ["# Parameters injected by tests/test_notebooks.py"]
    # repr of JSON values (str, numbers, lists, dicts, None, bools) is Python source.
    lines += [f"{key} = {value!r}" for key, value in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    return cell


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernelspec manager that knows one kernel: ipykernel on this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "faasplan tests",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(root)])


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}: cell {i} has stored outputs; clear them"
        assert cell.execution_count is None, (
            f"{path.name}: cell {i} has execution_count {cell.execution_count}; clear it")
    index = _parameters_index(nb, path.name)
    defined = _assigned_names(nb.cells[index].source)
    unknown = sorted(set(_test_parameters(nb)) - defined)
    assert not unknown, (
        f"{path.name}: metadata faasplan.test_parameters sets {unknown}, which the parameters "
        f"cell does not define (it defines {sorted(defined)})")


def test_injected_parameters_replace_defaults() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("A = 30\nB: list[str] = ['x']\nC = None"),
    ])
    nb.cells[1].metadata["tags"] = [PARAMETERS_TAG]
    index = _parameters_index(nb, "demo")
    assert index == 1
    assert _assigned_names(nb.cells[index].source) == {"A", "B", "C"}
    cell = _injected_cell({"A": 2, "B": ["y", "z"], "C": {"k": None, "on": True}})
    namespace: dict[str, Any] = {}
    exec(nb.cells[index].source, namespace)
    exec(cell.source, namespace)
    assert (namespace["A"], namespace["B"], namespace["C"]) == (2, ["y", "z"],
                                                                {"k": None, "on": True})
    assert cell.metadata["tags"] == [INJECTED_TAG]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_specs: KernelSpecManager) -> None:
    nb = _read(path)
    index = _parameters_index(nb, path.name)
    params = _test_parameters(nb)
    if params:
        nb.cells.insert(index + 1, _injected_cell(params))
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    # We own the kernel manager, so ask for the kernel to be shut down on exit.
    with client.setup_kernel(cleanup_kc=True):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, i)
            except (CellExecutionError, CellTimeoutError) as exc:
                # Number cells as in the stored notebook (the injected one is not there).
                stored = i - 1 if params and i > index else i
                pytest.fail(f"{path.name}: cell {stored} (0-based, markdown included) failed."
                            f"\n--- cell source ---\n{cell.source}\n--- error ---\n{exc}",
                            pytrace=False)
    images = sum(1 for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.outputs if "image/png" in out.get("data", {}))
    assert images > 0, f"{path.name}: ran, but displayed no figure"
