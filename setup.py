"""Build hook: compile the simulator's hot modules with mypyc, or fall back to pure Python.

Everything else about the package is in ``pyproject.toml``. The modules in :data:`CORE`
run once or more per simulated task: compiled, a simulated run takes up to about a quarter
less CPU time (``benchmarks/bench_simulator.py --pure``), and its results are the same to
the bit (``tests/test_compiled.py`` compares the two builds).

The compiled build is optional. It is skipped, with a note, when

* ``FAASPLAN_PURE_PYTHON=1`` is set at install time,
* mypyc cannot be imported, or
* compiling fails (no C compiler, say); nothing half-built is installed then.

The ``.py`` sources are installed either way. A compiled module shadows its source (an
editable install builds in place, under ``src/``): after editing one of :data:`CORE`,
run ``pip install -e .`` again, or set ``FAASPLAN_PURE_PYTHON=1`` when running to load
the sources instead (:mod:`faasplan._native`).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# The list of modules, read from the file without importing faasplan (whose dependencies
# are not installed yet).
CORE: tuple[str, ...] = runpy.run_path(str(HERE / "src" / "faasplan" / "_native.py"))["CORE"]
GROUP = "faasplan_core"  # mypyc's shared library: faasplan_core__mypyc


def _note(text: str) -> None:
    print(f"faasplan build: {text}", file=sys.stderr)


def _remove_in_place_builds(keep: tuple[str, ...] = ()) -> None:
    """Delete compiled modules an earlier editable install left under ``src/``, except
    those of the modules in ``keep``: they would shadow the sources of a pure-Python
    install, and the shim of a module no longer in :data:`CORE` would fail to import
    (its code is not in the new shared library)."""
    src = HERE / "src"
    stale = [] if keep else list(src.glob(f"{GROUP}__mypyc.*"))
    for path in (src / "faasplan").rglob("*"):
        if path.suffix not in (".so", ".pyd"):
            continue
        parts = path.relative_to(src).with_name(path.name.split(".")[0]).parts
        if ".".join(parts) not in keep:
            stale.append(path)
    for path in stale:
        path.unlink()
    if stale:
        _note(f"removed {len(stale)} compiled module(s) of an earlier build from src/")


def _pure_python(why: str) -> list[Any]:
    """No extensions, and none of an earlier build left to shadow the sources."""
    _note(f"{why}: pure-Python install")
    _remove_in_place_builds()
    return []


def compiled_extensions() -> list[Any]:
    """mypyc's extensions for :data:`CORE`, or ``[]`` for a pure-Python install."""
    if os.environ.get("FAASPLAN_PURE_PYTHON", "") not in ("", "0"):
        return _pure_python("FAASPLAN_PURE_PYTHON is set")
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        return _pure_python(f"mypyc is not available ({exc})")
    paths = [str(Path("src", *name.split(".")).with_suffix(".py")) for name in CORE]
    _remove_in_place_builds(keep=CORE)  # a module dropped from CORE since the last build
    try:
        # Each module is type-checked on its own (imports are not followed): what it
        # imports stays an ordinary Python object, and building takes seconds.
        return list(mypycify(["--follow-imports=skip", "--ignore-missing-imports", *paths],
                             opt_level="3", group_name=GROUP))
    except (Exception, SystemExit) as exc:  # mypyc refused a module (it exits): keep
        return _pure_python(f"mypyc could not compile the core ({exc!r})")


class OptionalBuildExt(build_ext):
    """``build_ext`` that installs pure Python instead of failing, and never half of it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = _pure_python(f"compiling the core failed ({exc})")


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
