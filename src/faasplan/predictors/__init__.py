"""faasplan.predictors."""
