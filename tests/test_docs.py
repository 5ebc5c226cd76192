"""The documentation builds without a warning, its tutorial runs, and the project files a
user looks for (licence, changelog) say what the package metadata says."""

from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.timeout(180)
def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, (f"sphinx-build -W failed (docs tools come with "
                                  f"pip install -e '.[dev]'):\n{done.stderr}")
    for page in ("index", "tutorial", "concepts", "changes", "reference/workflow",
                 "reference/planning", "reference/simulation", "reference/predictors",
                 "reference/report", "reference/runtime", "reference/worker",
                 "reference/conformance", "reference/wfcommons"):
        assert (out / f"{page}.html").is_file(), page
    # the reference is made from the docstrings
    workflow = (out / "reference" / "workflow.html").read_text(encoding="utf-8")
    for anchor in ("faasplan.workflow.Workflow.visualize", "faasplan.workflow.task",
                   "faasplan.workflow.requirements.detect_requirements"):
        assert f'id="{anchor}"' in workflow, anchor
    assert "Draw the DAG before any planning" in workflow
    planning = (out / "reference" / "planning.html").read_text(encoding="utf-8")
    assert 'id="faasplan.experiments.planning.plan"' in planning


def test_tutorial_examples_run() -> None:
    result = doctest.testfile(str(DOCS / "tutorial.rst"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              raise_on_error=False, verbose=False)
    assert result.attempted > 30
    assert result.failed == 0, f"{result.failed} tutorial examples failed (output above)"


@pytest.mark.parametrize("module", ["faasplan.workflow.graph", "faasplan.workflow.requirements",
                                    "faasplan.report.dag"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_licence_is_the_one_the_package_declares() -> None:
    declared = PYPROJECT["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert declared == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_has_the_current_version_and_unreleased_changes() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = PYPROJECT["project"]["version"]
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.M)
    assert "## [Unreleased]" in text
    import faasplan

    assert faasplan.__version__ == version


def test_dev_extra_installs_the_docs_tools() -> None:
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert any(re.match(r"sphinx\b", spec) for spec in dev), dev
