"""Errors raised by the simulator."""

from __future__ import annotations


class SimulationError(RuntimeError):
    """The simulated run went wrong: the plan, the workflow and the worker logic disagree."""


class SimulationStuckError(SimulationError):
    """Nothing is left to happen, yet some tasks never ran (a plan that deadlocks).

    ``unfinished`` lists the tasks that never executed, in topological order.
    """

    def __init__(self, message: str, unfinished: tuple[str, ...]) -> None:
        super().__init__(message)
        self.unfinished = unfinished
