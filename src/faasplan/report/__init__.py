"""faasplan.report."""
