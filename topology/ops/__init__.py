"""What ops see of a worker: the web views and their access check, the funnel page, metrics,
counters and live journey counts."""
