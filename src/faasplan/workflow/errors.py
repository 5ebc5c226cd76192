"""Exceptions raised while building, importing or encoding workflows."""

from __future__ import annotations


class WorkflowError(ValueError):
    """A workflow cannot be built as described (no tasks, duplicate ids, a cycle, ...)."""


class WorkflowFormatError(WorkflowError):
    """A workflow file (WfFormat JSON) is malformed.

    The message names the file, the task id and the field at fault.
    """

    def __init__(self, path: str, message: str, *, task: str | None = None,
                 field: str | None = None) -> None:
        self.path = path
        self.task = task
        self.field = field
        self.message = message
        where = [path]
        if task is not None:
            where.append(f"task {task!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its parts, so the error crosses process (and Dask) boundaries.
        return (_rebuild_format_error, (self.path, self.message, self.task, self.field))


def _rebuild_format_error(path: str, message: str, task: str | None,
                          field: str | None) -> WorkflowFormatError:
    return WorkflowFormatError(path, message, task=task, field=field)
