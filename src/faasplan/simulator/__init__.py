"""faasplan.simulator."""
