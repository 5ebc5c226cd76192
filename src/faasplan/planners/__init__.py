"""faasplan.planners."""
