"""The analytical sidecar: loads the stream's snapshots into an embedded analytical database
(DuckDB) and computes journey-stage sets and funnels with SQL set operations."""
