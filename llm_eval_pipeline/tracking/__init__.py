"""MLflow tracking: evaluation runs, charts and the dashboard run (no Dagster, no Spark)."""
