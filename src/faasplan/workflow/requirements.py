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

    Raises ``ValueError`` naming a declared requirement that is not PEP 508.
    """
    merged: dict[str, str] = {}
    for spec in declared:
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise ValueError(f"invalid requirement {spec!r}: {exc}; use PEP 508, e.g. 'numpy>=2'"
                             ) from None
        merged[_canon(req.name)] = str(req)
    for name in detected:
        merged.setdefault(_canon(name), name)
    return tuple(sorted(merged.values(), key=str.lower))


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirements not satisfied by the installed distributions (for fail-fast checks)."""
    missing = []
    for spec in requirements:
        req = Requirement(spec)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{spec} (installed: {version})")
    return missing
