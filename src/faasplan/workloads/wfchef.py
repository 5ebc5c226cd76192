"""Synthetic instances of real applications, from the WfChef recipes of WfCommons.

WfChef (in the ``wfcommons`` package, the ``wfcommons`` extra) learned each application's
recurring sub-structures and its task runtimes and file sizes from real runs. A recipe
grows one of those runs, chosen by size, to about the number of tasks asked for, and draws
every task's runtime and files from the distributions of its type. :func:`wfchef_instance`
returns the WfFormat instance WfCommons' generator builds; :func:`wfchef` reads it with
faasplan's own importer (:func:`faasplan.load_wfformat`), so an instance plans and
simulates like a recorded trace of the same application (same function names).

Generation is offline (the recipes ship inside the package) and seeded: WfCommons draws
from Python's and NumPy's global generators, which are seeded for the call and restored
afterwards, and its random file names are replaced by names derived from the writing (or
first reading) task, so one seed gives one workflow, across processes too.

The ``rnaseq`` recipe of ``wfcommons`` 1.6 is not offered: every one of its base runs has
no dependency between tasks and no files (63 independent tasks between WfChef's two
pseudo-nodes), so its instances are bags of tasks, not the nf-core/rnaseq DAG.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from faasplan.workflow import Workflow
from faasplan.workflow.wfformat import load_wfformat

__all__ = ["BROKEN_RECIPES", "INSTALL_HINT", "RECIPES", "MissingExtraError", "min_tasks",
           "wfchef", "wfchef_instance"]

#: Recipe name -> the ``wfcommons.wfchef.recipes`` class that implements it.
RECIPES: Mapping[str, str] = MappingProxyType({
    "blast": "BlastRecipe",
    "bwa": "BwaRecipe",
    "cycles": "CyclesRecipe",
    "epigenomics": "EpigenomicsRecipe",
    "genome": "GenomeRecipe",
    "montage": "MontageRecipe",
    "seismology": "SeismologyRecipe",
    "soykb": "SoykbRecipe",
    "srasearch": "SrasearchRecipe",
})

#: Recipes ``wfcommons`` ships that are refused, with the reason.
BROKEN_RECIPES: Mapping[str, str] = MappingProxyType({
    "rnaseq": "its base runs in wfcommons have no dependencies between tasks and no files "
              "(63 independent tasks), so its instances would be bags of tasks, not the "
              "rnaseq DAG",
})

#: What to run when the extra is missing.
INSTALL_HINT = "pip install 'faasplan[wfcommons]'"

# WfChef counts two pseudo-nodes (its SRC and DST) in the size of a graph.
_PSEUDO_NODES = 2
# WfCommons draws from the process-wide generators: one generation at a time.
_GLOBAL_RANDOM = threading.Lock()


class MissingExtraError(ImportError):
    """The ``wfcommons`` package is not installed; the message says what to install."""


def wfchef(recipe: str, tasks: int, seed: int = 0) -> Workflow:
    """A synthetic instance of a real application, from its WfChef recipe.

    Parameters
    ----------
    recipe : str
        One of :data:`RECIPES`: ``blast``, ``bwa``, ``cycles``, ``epigenomics``, ``genome``,
        ``montage``, ``seismology``, ``soykb``, ``srasearch``.
    tasks : int
        The number of tasks wanted: the instance has at most this many, usually within a
        few of it (WfChef adds whole sub-structures until the next one would not fit), and
        at least :func:`min_tasks` ``(recipe)`` are needed.
    seed : int
        Seed of the structure, runtimes and file sizes (>= 0). The same seed gives the same
        workflow, down to its ``structure_hash``.

    Returns
    -------
    Workflow
        One synthetic task per instance task (see :func:`faasplan.load_wfformat`), with
        the recipe's runtimes and file sizes as profiles, named
        ``wfchef-<recipe>-<tasks>-s<seed>``; function names are the application's task
        types (``mProject``, ``mDiffFit``, ...).

    Raises
    ------
    MissingExtraError
        The ``wfcommons`` extra is not installed (an ``ImportError``).
    ValueError
        An unknown or refused recipe, a ``tasks`` below the recipe's minimum, or a bad
        ``tasks`` / ``seed`` value; the message names the value and what to give.

    Examples
    --------
    >>> wf = wfchef("montage", 100, seed=1)
    >>> len(wf) <= 100, wf.name
    (True, 'wfchef-montage-100-s1')
    """
    doc = wfchef_instance(recipe, tasks, seed)
    with tempfile.TemporaryDirectory(prefix="faasplan-wfchef-") as folder:
        path = Path(folder) / f"{doc['name']}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return load_wfformat(path)


def wfchef_instance(recipe: str, tasks: int, seed: int = 0) -> dict[str, Any]:
    """The WfFormat instance :func:`wfchef` reads, as WfCommons' generator writes it.

    Its file names are derived from the tasks (``<task>.<n><ext>`` for the files a task
    writes, ``<task>.in<n><ext>`` for workflow inputs), and the fields that depend on the
    moment or the user (creation time, author) are left out, so the document depends on
    ``recipe``, ``tasks`` and ``seed`` only. Raises like :func:`wfchef`.
    """
    cls = _recipe_class(recipe)
    _check_int("tasks", tasks, 1)
    _check_int("seed", seed, 0)
    from wfcommons.wfgen import WorkflowGenerator

    name = f"wfchef-{recipe}-{tasks}-s{seed}"
    with _seeded(seed), _quiet():
        try:
            generated = WorkflowGenerator(cls.from_num_tasks(tasks + _PSEUDO_NODES)
                                          ).build_workflow(name)
        except ValueError as exc:
            smallest = min_tasks(recipe)
            if tasks >= smallest:
                raise
            raise ValueError(f"wfchef: recipe {recipe!r} cannot make {tasks} tasks: its "
                             f"smallest instance has {smallest} tasks ({exc}); ask for "
                             f"tasks >= {smallest}") from None
        generated.generate_json()
    return _deterministic(generated.workflow_json)


def min_tasks(recipe: str) -> int:
    """The fewest tasks :func:`wfchef` can make with ``recipe`` (its smallest base run).

    Raises like :func:`wfchef` for an unknown recipe or a missing extra.
    """
    cls = _recipe_class(recipe)
    summary = Path(cls().this_dir) / "microstructures" / "summary.json"
    bases = json.loads(summary.read_text(encoding="utf-8"))["base_graphs"]
    return min(int(b["order"]) for b in bases.values()) - _PSEUDO_NODES


# -- helpers ------------------------------------------------------------------------------
def _recipe_class(recipe: str) -> Any:
    if recipe in BROKEN_RECIPES:
        raise ValueError(f"wfchef: recipe {recipe!r} is not offered: "
                         f"{BROKEN_RECIPES[recipe]}; choose from {', '.join(RECIPES)}")
    if recipe not in RECIPES:
        raise ValueError(f"wfchef: unknown recipe {recipe!r}; choose from "
                         f"{', '.join(RECIPES)}")
    try:
        from wfcommons.wfchef import recipes
    except ImportError as exc:
        raise MissingExtraError(f"wfchef instances need the wfcommons package ({exc}); "
                                f"install the extra: {INSTALL_HINT}") from None
    return getattr(recipes, RECIPES[recipe])


def _check_int(name: str, value: object, smallest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"wfchef: {name} must be an integer >= {smallest}, got {value!r}")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global generators for the block, then restore them."""
    with _GLOBAL_RANDOM:
        saved_python, saved_numpy = random.getstate(), np.random.get_state()
        # A seed sequence spreads any seed >= 0 over NumPy's 32-bit legacy seed space.
        random.seed(seed)
        np.random.seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        try:
            yield
        finally:
            random.setstate(saved_python)
            np.random.set_state(saved_numpy)


@contextmanager
def _quiet() -> Iterator[None]:
    """WfCommons logs every generation at INFO; keep it off the user's log."""
    logger = logging.getLogger("wfcommons")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _deterministic(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without its moment-dependent fields and with task-derived file names."""
    out = {k: v for k, v in doc.items() if k not in ("createdAt", "author")}
    spec = doc["workflow"]["specification"]
    renamed = _file_names(spec["tasks"])
    tasks = [{**t, "inputFiles": [renamed[f] for f in t.get("inputFiles", [])],
              "outputFiles": [renamed[f] for f in t.get("outputFiles", [])]}
             for t in spec["tasks"]]
    files = [{**f, "id": renamed[f["id"]]} for f in spec.get("files", []) if f["id"] in renamed]
    execution = {k: v for k, v in doc["workflow"]["execution"].items() if k != "executedAt"}
    execution["executedAt"] = "1970-01-01T00:00:00+00:00"
    out["workflow"] = {**doc["workflow"], "specification": {**spec, "tasks": tasks,
                                                             "files": files},
                       "execution": execution}
    return out


def _file_names(tasks: list[dict[str, Any]]) -> dict[str, str]:
    """Old file id -> ``<writer>.<n><ext>``, or ``<first reader>.in<n><ext>`` for inputs."""
    renamed: dict[str, str] = {}
    for t in tasks:
        for n, old in enumerate(t.get("outputFiles", [])):
            renamed.setdefault(old, f"{t['id']}.{n}{os.path.splitext(old)[1]}")
    for t in tasks:
        fresh = [f for f in t.get("inputFiles", []) if f not in renamed]
        for n, old in enumerate(fresh):
            renamed[old] = f"{t['id']}.in{n}{os.path.splitext(old)[1]}"
    return renamed
