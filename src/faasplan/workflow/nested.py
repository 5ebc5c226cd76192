"""One traversal of nested argument structures.

Task arguments may hold task nodes at any depth inside lists, tuples and dict values
(``list[list[TaskNode]]``, ``dict[str, TaskNode]``, ``{"a": [n1, (n2, n3)]}``). Finding the
nodes, replacing them by ids for encoding and by values for execution are the same walk,
written once here as :func:`map_leaves`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def map_leaves(value: Any, fn: Callable[[Any], Any], match: type | tuple[type, ...]) -> Any:
    """Return a copy of ``value`` with every leaf of type ``match`` replaced by ``fn(leaf)``.

    Lists, tuples (named tuples keep their type) and dicts are rebuilt; anything else is a
    leaf, returned as is unless it matches. ``value`` is never mutated.

    >>> map_leaves({"a": [1, (2, 3)]}, lambda x: x * 10, int)
    {'a': [10, (20, 30)]}
    """
    if isinstance(value, match):
        return fn(value)
    if isinstance(value, list):
        return [map_leaves(v, fn, match) for v in value]
    if isinstance(value, tuple):
        items = [map_leaves(v, fn, match) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: map_leaves(v, fn, match) for k, v in value.items()}
    return value


def iter_leaves(value: Any, match: type[T] | tuple[type, ...]) -> Iterator[T]:
    """Yield, in argument order, every leaf of type ``match`` nested in ``value``.

    >>> list(iter_leaves([1, {"x": (2, "s")}], int))
    [1, 2]
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, match):
            yield item  # type: ignore[misc]
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
