"""Third-party requirements of a workflow, detected from its task functions' modules."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import sys
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement


@cache
def _module_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def imported_top_modules(fn: Callable[..., Any]) -> set[str]:
    """Top-level module names imported by the module defining ``fn`` (best effort)."""
    module = inspect.getmodule(fn)
    if module is None:
        return set()
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def detect_requirements(functions: Iterable[Callable[..., Any]]) -> set[str]:
    """Distribution names of the third-party modules the functions' modules import.

    The standard library and faasplan itself are left out; a module whose distribution is
    unknown (not installed here) is kept under its module name.
    """
    dists = _module_distributions()
    found: set[str] = set()
    for fn in functions:
        for mod in imported_top_modules(fn):
            if mod in sys.stdlib_module_names or mod in ("faasplan", "__future__"):
                continue
            found.update(dists.get(mod, [mod]))
    return found


def merge_requirements(declared: Iterable[str], detected: Iterable[str]) -> tuple[str, ...]:
    """Declared requirements plus detected names not already declared, sorted.

    Several declared requirements on one distribution (``numpy>=1.26``, ``numpy<3``) are
    all kept: each must hold. Raises ``TypeError`` if ``declared`` is a single string and
    ``ValueError`` naming a declared requirement that is not PEP 508.
    """
    if isinstance(declared, str):
        raise TypeError(f"requirements must be a list of strings, e.g. [{declared!r}], "
                        f"not the string {declared!r}")
    merged: dict[str, None] = {}
    names: set[str] = set()
    for spec in declared:
        req = _parse_requirement(spec)
        names.add(_canon(req.name))
        merged[str(req)] = None
    for name in detected:
        if _canon(name) not in names:
            names.add(_canon(name))
            merged[name] = None
    return tuple(sorted(merged, key=str.lower))


def _parse_requirement(spec: str) -> Requirement:
    """``spec`` as a PEP 508 requirement; ``ValueError`` naming it if it is not one."""
    try:
        return Requirement(spec)
    except InvalidRequirement as exc:
        # packaging's message ends with a multi-line caret drawing; its first line says it.
        detail = str(exc).splitlines()[0]
        raise ValueError(f"invalid requirement {spec!r}: {detail}; use PEP 508, "
                         f"e.g. 'numpy>=2'") from None


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirements not satisfied by the installed distributions (for fail-fast checks).

    A requirement whose environment marker does not apply here (``pywin32;
    sys_platform == "win32"`` on Linux) is not needed, so never missing.
    """
    missing = []
    for spec in requirements:
        req = _parse_requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{spec} (installed: {version})")
    return missing
