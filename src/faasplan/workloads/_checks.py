"""Parameter checks shared by the workload builders."""

from __future__ import annotations


def positive_int(workload: str, name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{workload}: {name} must be an integer >= {minimum}, got {value!r}")
    return value
