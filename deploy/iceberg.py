"""The Iceberg runtime jar of the Spark sidecar, from Maven Central: `python -m deploy.iceberg`
resolves deploy/iceberg/pom.xml with Maven into a cache outside the repository
(<cache>/cjo/iceberg/<version>/lib, next to the Kafka jars), as deploy/broker.py does for Kafka;
`make install` runs it. sidecar/spark.py calls `install()` too, so a first Spark run resolves it
if nothing did before.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

POM = Path(__file__).resolve().parent / "iceberg" / "pom.xml"
VERSION = "1.12.0"  # as in the pom; the runtime for Spark 4.1 and Scala 2.13
JAR = f"iceberg-spark-runtime-4.1_2.13-{VERSION}.jar"


class IcebergError(RuntimeError):
    """The jar could not be resolved; the message says why."""


def lib_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cjo" / "iceberg" / VERSION / "lib"


def install() -> Path:
    """The runtime jar's path, resolved with Maven the first time (cached after)."""
    lib = lib_dir()
    if (lib / ".complete").exists():
        return lib / JAR
    if shutil.which("mvn") is None:
        raise IcebergError("Maven (mvn) is not on PATH; install Maven 3.8+ to fetch the Iceberg "
                           "runtime jar")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(["mvn", "-q", "-B", "-f", str(POM), f"-Diceberg.version={VERSION}",
                           "dependency:copy-dependencies", "-DincludeScope=runtime",
                           f"-DoutputDirectory={tmp}"], capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / JAR).exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise IcebergError(f"Maven could not resolve {JAR}:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    (lib / ".complete").write_text(VERSION + "\n")
    return lib / JAR


if __name__ == "__main__":
    try:
        print(f"Iceberg {VERSION} runtime in {install()}")
    except IcebergError as exc:
        print(f"deploy.iceberg: {exc}", file=sys.stderr)
        sys.exit(1)
