"""Service glue around the pipeline: systemd (unit, notify, stack dumps, safe gates), logs, status, checks,
metrics."""
