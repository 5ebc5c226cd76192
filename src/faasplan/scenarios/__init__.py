"""faasplan.scenarios."""
