"""faasplan.runtime."""
