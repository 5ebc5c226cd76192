"""faasplan.workloads."""
