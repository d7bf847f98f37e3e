"""The Spark tests: one Spark driver for the whole test session (it takes 12-30 s to start).
Never skipped: when Spark cannot start (no pyspark, no Java, no Iceberg jar), they fail and say
why. `make unit` does not collect them (tests/unit only); `make test` runs them."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark_driver():
    from sidecar.spark import SparkUnavailable, session

    try:
        return session()
    except SparkUnavailable as exc:
        pytest.fail(f"Spark could not start: {exc}", pytrace=False)
