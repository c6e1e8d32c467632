"""MLflow: the logger adapter, the store, the outage spool and its replay, run tags, artifacts."""
