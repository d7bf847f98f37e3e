"""`cjo`: one command for everything a user runs.

    cjo broker install|start|stop|status   the local Kafka broker (deploy/broker.py)
    cjo topics create|delete               this app's topics
    cjo worker [FAUST WORKER OPTIONS]      a Faust worker of the topology
    cjo validate FILE                      check segment and delivery definitions
    cjo apply FILE                         validate and publish them to running workers
    cjo sidecar run [--once] [--engine E]  load snapshots into DuckDB or Spark, print funnels
    cjo sidecar check [--percent P]        sampled consistency check; exit 1 on a violation
    cjo sidecar query SQL [--limit N]      one read-only SELECT over the sidecar's tables
    cjo profile ID                         a profile, as GET /profiles/ID shows it
    cjo journeys                           journeys with live and sidecar counts
    cjo funnel ID                          one journey's funnel
    cjo demo                               the end-to-end demo on the local broker
"""
from __future__ import annotations

import argparse
import logging
import sys

from cjo.settings import Settings


def _broker(args, settings: Settings) -> int:
    from deploy.broker import BrokerError, LocalBroker

    broker = LocalBroker.from_settings(settings)
    try:
        if args.action == "install":
            print(f"Kafka {broker.version} jars in {broker.install()}")
        elif args.action == "start":
            took = broker.start()
            print(broker.status() + (f" (started in {took:.1f}s)" if took else " (already running)"))
        elif args.action == "stop":
            print("stopped" if broker.stop() else "was not running")
        else:
            print(broker.status())
    except BrokerError as exc:
        print(f"cjo broker {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _topics(args, settings: Settings) -> int:
    from topology.pipeline import topics

    if args.action == "create":
        created = topics.ensure_topics(settings)
        print("created: " + (", ".join(created) or "nothing, all exist"))
    else:
        print("deleted: " + (", ".join(topics.delete_topics(settings)) or "nothing"))
    return 0


def _worker(argv: list[str], settings: Settings) -> int:
    from topology.app import create_app
    from topology.pipeline.topics import ensure_topics, generation

    level = _loglevel_option(argv)
    if level is None:
        argv = ["--loglevel", settings.log_level, *argv]
    else:
        settings = settings.with_(log_level=level)
    ids = None
    if "--help" not in argv:  # Faust prints its worker options; no broker needed for that
        ensure_topics(settings)
        ids = generation(settings)  # before any input is processed: every output id has it
    topology = create_app(settings, generation=ids)
    # Faust's own command line (click) reads sys.argv: hand it `worker` and the options.
    sys.argv = ["cjo", "worker", *argv]
    topology.app.main()
    return 0


def _loglevel_option(argv: list[str]) -> str | None:
    """The value of Faust's -l/--loglevel option, if given."""
    for i, arg in enumerate(argv):
        if arg in ("-l", "--loglevel") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--loglevel="):
            return arg.split("=", 1)[1]
    return None


def _validate(args, settings: Settings) -> int:
    from state.definitions import DefinitionError, load_definitions

    try:
        with open(args.file) as f:
            defs = load_definitions(f.read())
    except (OSError, DefinitionError) as exc:
        print(f"{args.file}: invalid\n{exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {len(defs.segments)} segments, {len(defs.deliveries)} deliveries, "
          f"{len(defs.journeys)} journeys: valid")
    return 0


def _apply(args, settings: Settings) -> int:
    from state.definitions import DefinitionError
    from topology.pipeline.definitions import apply_file
    from topology.pipeline.topics import ensure_topics

    ensure_topics(settings)
    try:
        changed = apply_file(settings, args.file)
    except (OSError, DefinitionError) as exc:
        print(f"{args.file}: not applied\n{exc}", file=sys.stderr)
        return 1
    for key, version in changed:
        print(f"applied {key} version {version}")
    if not changed:
        print("nothing changed")
    return 0


def _sidecar(args, settings: Settings) -> int:
    from sidecar.follower import run, run_check

    spark = None
    if args.engine == "spark":
        from sidecar.spark import SparkOptions

        conf = {}
        for item in args.spark_conf:
            key, sep, value = item.partition("=")
            if not sep or not key.startswith("spark."):
                print(f"cjo sidecar: --spark-conf {item!r}: expected spark.KEY=VALUE",
                      file=sys.stderr)
                return 2
            conf[key] = value
        spark = SparkOptions(args.master, conf)
    if args.action == "check":
        return run_check(settings, args.percent, spark)
    if args.action == "query":
        from sidecar.query import run_query

        if not args.sql:
            print("cjo sidecar query: give the SELECT to run", file=sys.stderr)
            return 2
        return run_query(settings, args.sql, args.limit, spark)
    return run(settings, once=args.once, spark=spark)


def _ops(args, settings: Settings) -> int:
    from cjo.ops_cli import run as run_ops

    return run_ops(settings, args.command, getattr(args, "id", None))


def _demo(args, settings: Settings) -> int:
    from cjo.demo import run_demo

    return run_demo(settings, events=args.events, users=args.users)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"cjo: {exc}", file=sys.stderr)
        return 2
    if argv[:1] == ["worker"]:
        return _worker(argv[1:], settings)
    # The short-lived commands retry transient broker errors themselves (a fresh topic's
    # leader not yet ready); aiokafka's warnings about each retry are noise here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    parser = argparse.ArgumentParser(prog="cjo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("broker", help="the local Kafka broker")
    b.add_argument("action", choices=["install", "start", "stop", "status"])
    t = sub.add_parser("topics", help="this app's topics")
    t.add_argument("action", choices=["create", "delete"])
    sub.add_parser("worker", help="run a Faust worker (options go to Faust's worker command)")
    for name, text in (("validate", "check a definitions file"),
                       ("apply", "validate and publish a definitions file")):
        sub.add_parser(name, help=text).add_argument("file")
    sc = sub.add_parser("sidecar", help="the analytical sidecar")
    sc.add_argument("action", choices=["run", "check", "query"])
    sc.add_argument("sql", nargs="?", help="query: one read-only SELECT")
    sc.add_argument("--limit", type=int, default=50, help="query: rows to print")
    sc.add_argument("--once", action="store_true", help="run: load what is there, print, stop")
    sc.add_argument("--percent", type=float, default=50.0, help="check: sample size")
    sc.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                    help="DuckDB embedded (default), or Spark SQL over Iceberg tables")
    sc.add_argument("--master", help="spark: the Spark master (default local[2])")
    sc.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="spark: a Spark property, e.g. the Iceberg catalog "
                         "(spark.sql.catalog.cjo.type=rest); repeatable")
    sub.add_parser("profile", help="show a profile (asks a worker)").add_argument("id")
    sub.add_parser("journeys", help="journeys with live and sidecar counts (asks a worker)")
    sub.add_parser("funnel", help="one journey's funnel (asks a worker)").add_argument("id")
    d = sub.add_parser("demo", help="run the end-to-end demo on the local broker")
    d.add_argument("--events", type=int, default=5000)
    d.add_argument("--users", type=int, default=100)
    args = parser.parse_args(argv)
    handler = {"broker": _broker, "topics": _topics, "demo": _demo, "validate": _validate,
               "apply": _apply, "sidecar": _sidecar, "profile": _ops, "journeys": _ops,
               "funnel": _ops}[args.command]
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
