"""The compiled core: which modules ``setup.py`` compiles with mypyc, and the way back to
their Python sources.

The modules in :data:`CORE` run once or more per simulated task. An install compiles
them when it can (see ``setup.py``); the ``.py`` sources are installed either way, and the
compiled module, when present, is the one Python imports. With ``FAASPLAN_PURE_PYTHON=1``
in the environment (set before ``faasplan`` is imported) the sources are imported
instead: to profile the core with :mod:`cProfile`, to step through it in a debugger, or
to try an edit without reinstalling. Both give the same results.

Standard library only: ``setup.py`` reads :data:`CORE` from this file before anything
is installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

CORE: tuple[str, ...] = (
    "faasplan.simulator.clock",
    "faasplan.simulator.network",
    "faasplan.simulator.storage",
    "faasplan.simulator.faas",
    "faasplan.simulator.groundtruth",
    "faasplan.simulator.driver",
    "faasplan.worker.effects",
    "faasplan.worker.taskinfo",
    "faasplan.worker.branch",
)
"""The compiled modules: the event loop, bandwidth, storage, FaaS, task and driver models
of the simulator, and the worker logic every driver runs with the effects it yields and the
tasks it reads."""

ENV = "FAASPLAN_PURE_PYTHON"


def pure_python_requested() -> bool:
    """Whether the environment asks for the Python sources of :data:`CORE`."""
    return os.environ.get(ENV, "") not in ("", "0")


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` file of a :data:`CORE` module, ahead of its compiled twin."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in CORE:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for entry in path or ():
            source = os.path.join(entry, leaf)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> None:
    """Import the sources of :data:`CORE` from now on if :func:`pure_python_requested`
    (once per process; :mod:`faasplan` calls it on import)."""
    if pure_python_requested() and not any(isinstance(f, _Sources) for f in sys.meta_path):
        sys.meta_path.insert(0, _Sources())


def compiled_modules() -> list[str]:
    """The :data:`CORE` modules that are, or on import will be, compiled code."""
    out = []
    for name in CORE:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is None:
            spec = importlib.util.find_spec(name)
            origin = spec.origin if spec is not None else None
        if origin is not None and not origin.endswith(".py"):
            out.append(name)
    return out
