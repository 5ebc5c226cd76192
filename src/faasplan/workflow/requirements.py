"""Third-party requirements of a workflow, detected from its task functions' modules."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

_OPTIONAL_IMPORT_GUARDS = frozenset(
    {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
"""Exception names whose ``except`` makes the imports of its ``try`` body optional."""

_NEVER_REQUIRED = frozenset({"faasplan", "__future__", "__main__"})


def imported_top_modules(fn: Callable[..., Any]) -> set[str]:
    """Top-level names of the modules imported unconditionally by ``fn``'s module.

    Best effort, from the module's source: relative imports, imports inside the body of a
    ``try`` whose ``except`` catches ``ImportError`` (an optional dependency) and imports
    under ``if TYPE_CHECKING:`` are left out. The standard library is not filtered here.
    """
    module = inspect.getmodule(fn)
    if module is None:
        return set()
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    try:
        tree = _parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    _collect_imports(tree, names)
    return names


def _parse(source: str, tries: int = 3) -> ast.Module:
    # Some CPython 3.11 releases track the AST constructor's recursion depth in state
    # shared by threads: another thread parsing at the same moment can make a valid parse
    # fail with "AST constructor recursion depth mismatch" (a SystemError). Parse again.
    for attempt in range(tries):
        try:
            return ast.parse(source)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _collect_imports(node: ast.AST, names: set[str]) -> None:
    """Add the unconditional absolute imports under ``node`` to ``names``."""
    if isinstance(node, ast.Import):
        names.update(alias.name.split(".")[0] for alias in node.names)
        return
    if isinstance(node, ast.ImportFrom):
        if node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        return
    if isinstance(node, ast.Try | ast.TryStar) and _guards_imports(node):
        # the guarded body is optional; the handlers, else and finally still run
        children: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        children = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        _collect_imports(child, names)


def _guards_imports(node: ast.Try | ast.TryStar) -> bool:
    """Whether one of the ``except`` clauses of ``node`` catches a failed import."""
    for handler in node.handlers:
        if handler.type is None:
            return True
        caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(_dotted_tail(c) in _OPTIONAL_IMPORT_GUARDS for c in caught):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return _dotted_tail(test) == "TYPE_CHECKING"


def _dotted_tail(node: ast.expr) -> str | None:
    """``b`` for ``a.b`` and ``b``, else ``None``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _installed_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> distributions installed on ``sys.path`` as it is now."""
    return _distributions_on(tuple((entry, _mtime(entry)) for entry in sys.path))


@lru_cache(maxsize=4)
def _distributions_on(path_state: tuple[tuple[str, float], ...]) -> Mapping[str, list[str]]:
    # Scanning every distribution's metadata takes a few hundred ms, too slow for each
    # Workflow; a directory's mtime changes when a distribution is installed into it, so
    # the key sees both a changed sys.path and a pip install.
    del path_state
    return importlib.metadata.packages_distributions()


def _mtime(entry: str) -> float:
    try:
        return os.stat(entry or ".").st_mtime
    except OSError:
        return -1.0


def detect_requirements(functions: Iterable[Callable[..., Any]]) -> set[str]:
    """Names of the installed distributions the functions' modules import unconditionally.

    A module name counts only when an installed distribution provides it (found with
    :func:`importlib.metadata.packages_distributions`), so the user's own modules next to
    the workflow, optional imports (inside ``try ... except ImportError``) and the standard
    library are not requirements; nor is faasplan itself.

    >>> import json
    >>> detect_requirements([json.dumps])
    set()
    """
    dists = _installed_distributions()
    found: set[str] = set()
    for fn in functions:
        for mod in imported_top_modules(fn):
            if mod in sys.stdlib_module_names or mod in _NEVER_REQUIRED:
                continue
            found.update(d for d in dists.get(mod, ()) if _canon(d) != "faasplan")
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
