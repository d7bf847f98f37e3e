"""The analytical sidecar: loads the stream's snapshots into an embedded analytical database
(DuckDB), or into Iceberg tables through Spark SQL (`--engine spark`), and computes journey-stage
sets and funnels with SQL set operations."""
