"""Planners: pure functions from a workflow and predictions to a :class:`Plan`.

Planners never import the simulator; they score candidates through an ``evaluate``
function supplied by the caller (:func:`faasplan.plan` wires in the simulator).
"""

from faasplan.planners.context import Estimates, PlanningContext
from faasplan.planners.plan import Plan, PlanError
from faasplan.planners.registry import PLANNERS, get_planner, planner_names, run_planner

__all__ = [
    "PLANNERS",
    "Estimates",
    "Plan",
    "PlanError",
    "PlanningContext",
    "get_planner",
    "planner_names",
    "run_planner",
]
