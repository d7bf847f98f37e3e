"""The documents tell the truth, and a test says so when they stop.

README.md, docs/journeys.md, docs/producers.md and schemas/README.md are read as a new user
reads them: every `cjo` command README shows runs (with `--help`, so nothing starts) and takes
the flags it is shown with; every topic they name is in the topic catalogue
(topology/pipeline/topics.py), every table row pairs a topic with its own schema, every file
they name exists; README's configuration table is the set of `CJO_*` variables the code reads,
with the defaults `Settings` has; its metric names are the worker's, its example requests reach
a view, its `make` targets exist.

Each check takes a document's text and returns its problems (empty: true), so each test of the
real documents has a twin that feeds the check a doctored text and expects the problem found.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import click
import pytest
from faust.cli.worker import worker as faust_worker

from cjo.settings import Settings
from schemas import current_schemas
from schemas.internal import InternalCodec, codec_for
from topology.pipeline import topics

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/journeys.md", "docs/producers.md", "schemas/README.md")
TOPIC_TABLES = ("README.md", "schemas/README.md")  # each names every topic of the catalogue
CODE_DIRS = ("cjo", "deploy", "topology", "state", "sidecar", "schemas")


def read(name: str) -> str:
    return (ROOT / name).read_text()


# -- commands --------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")  # FILE, ID, SQL, N, OPTIONS
SPAN = re.compile(r"`(cjo [^`]*)`((?:\s*/\s*`[^`]+`)*)")  # `cjo broker stop` / `status`
CODE_LINE = re.compile(r"^ {4,}(?:\S*/)?cjo (.*)$", re.M)  # .venv/bin/cjo worker


def _argv(rest: str) -> list[str]:
    """The words of a command line up to a comment or the first word of a diagram."""
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        words = rest.split()
    out = []
    for word in words:
        if not word.isascii():
            break
        out.append(word)
    return out


def cjo_commands(text: str) -> list[list[str]]:
    """Every `cjo ...` command line of a document, as the words after `cjo`."""
    found = []
    for match in SPAN.finditer(text):
        base = _argv(match.group(1)[4:])
        found.append(base)
        for alternative in re.findall(r"`([^`]+)`", match.group(2)):
            if alternative.startswith("cjo "):
                found.append(_argv(alternative[4:]))
            elif base:
                found.append(base[:-1] + _argv(alternative))
    found += [_argv(rest) for rest in CODE_LINE.findall(text)]
    return [argv for argv in found if argv]


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the words to run, the flags named): placeholders are left out of the run, and so is a
    flag whose value is a placeholder (`[--percent P]`); the flag is still checked by name."""
    words = [w.strip("[]") for w in argv]
    words = [w for w in words if w]
    run, flags = [], []
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word.startswith("--"):
            flags.append(word.split("=", 1)[0])
            if PLACEHOLDER.fullmatch(nxt) or word == "--help":
                continue
        elif PLACEHOLDER.fullmatch(word):
            continue
        run.append(word)
    return run, flags


@lru_cache(maxsize=None)
def run_cjo(args: tuple[str, ...]) -> tuple[int, str]:
    """`cjo ARGS` as a subprocess, on a data directory of its own and a broker address nothing
    listens on (a command that wrongly reached for the broker fails instead of using one)."""
    env = {**os.environ, "CJO_DATA_DIR": str(Path(tempfile.gettempdir()) / "cjo-test-docs"),
           "CJO_BROKER": "kafka://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "cjo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def faust_worker_problems(args: list[str]) -> list[str]:
    """Parse worker options as Faust's `worker` command does (its option choices included)."""
    try:
        faust_worker.as_click_command().make_context("worker", list(args))
    except click.ClickException as exc:
        return [f"`cjo worker {' '.join(args)}`: Faust refuses it: {exc.format_message()}"]
    return []


def command_problems(text: str) -> list[str]:
    """Each command runs with `--help` (exit 0: the subcommand and its positional choices
    exist, values given before it parse) and its help names every flag the document shows."""
    commands = {}
    for argv in cjo_commands(text):
        words, flags = _split(argv)
        key = tuple(words)
        commands.setdefault(key, set()).update(flags)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = dict(zip(commands, pool.map(lambda w: run_cjo((*w, "--help")), commands)))
    problems = []
    for words, flags in commands.items():
        shown = "cjo " + " ".join(words)
        code, out = answers[words]
        if code != 0:
            last = (out.strip().splitlines() or [""])[-1]  # argparse's error, a traceback's end
            problems.append(f"`{shown} --help` exits {code}: {last}")
            continue
        for flag in sorted(flags):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out):
                problems.append(f"`{shown}`: {flag} is not an option of `{words[0]}`")
        if words[0] == "worker":
            problems += faust_worker_problems(list(words[1:]))
    return problems


def subcommands() -> list[str]:
    code, out = run_cjo(("--help",))
    assert code == 0, out
    return re.search(r"\{([\w,]+)\}", out).group(1).split(",")


def make_problems(text: str, makefile: str) -> list[str]:
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = re.findall(r"`make ([\w-]+)`", text) + re.findall(r"^ {4,}make ([\w-]+)", text, re.M)
    return [f"`make {t}`: no such target in the Makefile" for t in named if t not in targets]


# -- topics, records and files ---------------------------------------------------------------

CATALOGUE = topics.ALL + topics.CHANGELOGS
TOPIC = re.compile(r"(?:<app>|(?<![\w/.-])cjo)\.([a-z][a-z0-9-]*)(?![\w(])")
CHANGELOG = re.compile(r"(?:<app>|(?<![\w/.-])cjo)-([a-z][a-z0-9_]*)-changelog")


def named_topics(text: str) -> list[tuple[str, str]]:
    """(how the document writes it, the catalogue name) of every topic named, in order."""
    found = [(m.start(), m.group(0), m.group(1)) for m in TOPIC.finditer(text)]
    found += [(m.start(), m.group(0), f"{m.group(1)}-changelog") for m in CHANGELOG.finditer(text)]
    return [(shown, name) for _, shown, name in sorted(found)]


def topic_problems(text: str, catalogue=CATALOGUE) -> list[str]:
    known = {spec.name for spec in catalogue}
    return [f"{shown}: not in the topic catalogue (topology/pipeline/topics.py)"
            for shown, name in named_topics(text) if name not in known]


def coverage_problems(text: str, catalogue=CATALOGUE) -> list[str]:
    named = {name for _, name in named_topics(text)}
    return [f"topic {spec.name} of the catalogue is not named" for spec in catalogue
            if spec.name not in named]


def _record_stems() -> dict[str, str]:
    return {s.full_name: stem for stem, s in current_schemas().items()}


def table_problems(text: str, catalogue=CATALOGUE) -> list[str]:
    """In a table row that names topics and their schemas (`x.avsc` or the record name, in the
    same order), each topic's schema is the catalogue's."""
    by_name, stems = {spec.name: spec for spec in catalogue}, _record_stems()
    problems = []
    for row in (line for line in text.splitlines() if line.startswith("|")):
        names = [name for _, name in named_topics(row)]
        records = [stems.get(f"cjo.{r}", f"cjo.{r}") for r in re.findall(r"cjo\.([A-Z]\w*)", row)]
        files = re.findall(r"`([a-z_]+)\.avsc`", row)
        for schemas in (records, files):
            if not names or len(names) != len(schemas):
                continue
            for name, schema in zip(names, schemas):
                spec = by_name.get(name)
                if spec is not None and spec.schema != schema:
                    problems.append(f"{name}: the catalogue's schema is {spec.schema}.avsc, "
                                    f"the table says {schema}")
    return problems


def record_problems(text: str) -> list[str]:
    """Every Avro record or enum named `cjo.Name` is defined in schemas/."""
    known = set()
    for s in current_schemas().values():
        known.update(s.parsed.get("__named_schemas", {}))
    return [f"cjo.{r}: no such record in schemas/" for r in re.findall(r"\bcjo\.([A-Z]\w*)", text)
            if f"cjo.{r}" not in known]


FILE_EXT = r"(?:avsc|json|py|ya?ml|md|xml|toml|png)"
FILE_IN_CODE = re.compile(rf"`([\w./-]+\.{FILE_EXT})`")
FILE_LINKED = re.compile(r"\]\(([^)\s#]+)\)")
SCHEMA_FILE = re.compile(r"(?<![\w/.-])(schemas/[\w./-]*\.(?:avsc|json))")


def file_problems(text: str, doc: str) -> list[str]:
    """Every file named exists: a path from the repository's root or the document's folder, a
    bare name (`model.py` in a table row about `tests/`) in one of the repository's folders."""
    names = FILE_IN_CODE.findall(text) + SCHEMA_FILE.findall(text)
    names += [n for n in FILE_LINKED.findall(text) if "://" not in n]
    here = (ROOT / doc).parent
    return [f"{name}: no such file" for name in dict.fromkeys(names)
            if not (ROOT / name).exists() and not (here / name).exists()
            and ("/" in name or not _somewhere(name))]


def _somewhere(name: str) -> bool:
    folders = [d for d in ROOT.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return any(next(d.rglob(name), None) for d in folders)


# -- configuration, metrics, views -----------------------------------------------------------

CONFIG_ROW = re.compile(r"^\| `(CJO_[A-Z0-9_]+)` \| ([^|]*) \|", re.M)


def variables_read() -> set[str]:
    """Every CJO_* variable the code reads (cjo/settings.py, and the few modules that read
    their own: the clock file, the CLI's token, the broker's heap)."""
    found = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            found.update(re.findall(r"[\"'](CJO_[A-Z0-9_]+)[\"']", path.read_text()))
    return found


def config_problems(text: str, read_by_code: set[str], defaults: dict[str, str]) -> list[str]:
    rows = dict(CONFIG_ROW.findall(text))
    problems = [f"{v}: in the Configuration table, read by no code" for v in rows
                if v not in read_by_code]
    problems += [f"{v}: read by the code, missing from the Configuration table"
                 for v in sorted(read_by_code - set(rows))]
    for var, cell in rows.items():
        shown = cell.strip().strip("`")
        if var not in defaults or re.search(r"[~<(`]", shown):
            continue  # no default in Settings, or one that depends on the machine
        if not _same(shown, defaults[var]):
            problems.append(f"{var}: the table's default is {shown}, Settings has "
                            f"{defaults[var]!r}")
    return problems


def _same(shown: str, actual: str) -> bool:
    try:
        return float(shown) == float(actual)
    except ValueError:
        return shown == actual


def metric_names() -> set[str]:
    """The worker's metrics as Prometheus shows them: a counter's name ends in `_total`."""
    source = read("topology/ops/metrics.py")
    others = set(re.findall(r"(?:Histogram|GaugeMetricFamily)\(\s*\"(cjo_\w+)\"", source))
    return {n if n in others else f"{n}_total" for n in re.findall(r"\"(cjo_\w+)\"", source)}


def metric_problems(text: str, metrics: set[str]) -> list[str]:
    named = set(re.findall(r"`(cjo_[a-z_]+)", text))
    problems = [f"{n}: the worker has no such metric" for n in sorted(named - metrics)]
    problems += [f"{n}: a metric of the worker the README does not name"
                 for n in sorted(metrics - named)]
    return problems


def view_paths() -> list[re.Pattern]:
    pages = re.findall(r"@app\.page\(\"([^\"]+)\"\)", read("topology/ops/views.py"))
    return [re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p))) for p in pages]


def view_problems(text: str, views: list[re.Pattern]) -> list[str]:
    paths = [p.split("?")[0] for p in re.findall(r"127\.0\.0\.1:\d+(/[\w/{}.?=-]*)", text)]
    return [f"{p}: no view serves it" for p in dict.fromkeys(paths)
            if not any(v.fullmatch(p) for v in views)]


# -- the documents as they are ---------------------------------------------------------------

def test_every_command_the_readme_shows_runs_with_its_flags():
    assert command_problems(read("README.md")) == []


def test_the_readme_shows_every_subcommand():
    shown = {argv[0] for argv in cjo_commands(read("README.md"))}
    assert [c for c in subcommands() if c not in shown] == []


def test_make_targets_exist():
    assert make_problems(read("README.md"), read("Makefile")) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_topic_named_is_in_the_catalogue(doc):
    assert topic_problems(read(doc)) == []


@pytest.mark.parametrize("doc", TOPIC_TABLES)
def test_the_topic_tables_name_every_topic_with_its_schema(doc):
    assert coverage_problems(read(doc)) + table_problems(read(doc)) == []


def format_problems(text: str, catalogue=CATALOGUE) -> list[str]:
    """In schemas/README.md's topic table, the last column is each topic's format: msgpack
    where the worker's codec is schemas.internal's, else Avro."""
    by_name = {spec.name: spec for spec in catalogue}
    problems = []
    for row in (line for line in text.splitlines() if line.startswith("| `<app>")):
        spec = by_name.get(named_topics(row)[0][1])
        shown = row.rstrip(" |").rsplit("|", 1)[-1].strip()
        if spec is not None:
            codec = codec_for(spec.schema, spec.name)
            wanted = "msgpack" if isinstance(codec, InternalCodec) else "Avro"
            if shown != wanted:
                problems.append(f"{spec.name}: format {shown!r}, the worker writes {wanted}")
    return problems


def test_the_topic_table_gives_each_topics_format():
    assert format_problems(read("schemas/README.md")) == []
    doctored = read("schemas/README.md").replace("`wakeup.avsc`) | Avro", "`wakeup.avsc`) | msgpack")
    assert format_problems(doctored) == [
        "wakeups-changelog: format 'msgpack', the worker writes Avro"]


@pytest.mark.parametrize("doc", DOCS)
def test_every_record_and_file_named_exists(doc):
    assert record_problems(read(doc)) + file_problems(read(doc), doc) == []


def test_the_configuration_table_is_what_the_code_reads():
    defaults = Settings.from_env({}).to_env()
    assert config_problems(read("README.md"), variables_read(), defaults) == []


def test_metric_names_and_view_paths_are_the_workers():
    readme = read("README.md")
    assert metric_problems(readme, metric_names()) + view_problems(readme, view_paths()) == []


# -- the checks catch what they check --------------------------------------------------------

def test_a_command_flag_or_option_value_the_code_lacks_is_reported():
    doctored = read("README.md") + (
        "\n| `cjo frobnicate` | x |\n| `cjo sidecar chek` | x |\n"
        "| `cjo sidecar check --bogus 3` | x |\n| `cjo sidecar check --percent abc` | x |\n"
        "\n    .venv/bin/cjo worker --loglevel warning   # a level Faust has no name for\n")
    found = command_problems(doctored)
    problems = "\n".join(found)
    assert "`cjo frobnicate --help` exits 2" in problems
    assert "`cjo sidecar chek --help` exits 2" in problems
    assert "`cjo sidecar check --bogus 3`: --bogus is not an option of `sidecar`" in problems
    assert "`cjo sidecar check --percent abc --help` exits 2" in problems
    assert "`cjo worker --loglevel warning`: Faust refuses it" in problems
    assert len(found) == 5, problems


def test_the_command_parser_reads_spans_alternatives_and_code_lines():
    text = ("| `cjo broker stop` / `status` | x |\n| `cjo profile ID` / `cjo journeys` | x |\n"
            "`cjo sidecar check [--percent P]`\n\n"
            "    cjo sidecar query \"SELECT 1\" --limit 5   # a comment\n"
            "    cjo apply ──▶ <app>.definitions\n")
    assert cjo_commands(text) == [["broker", "stop"], ["broker", "status"], ["profile", "ID"],
                                  ["journeys"], ["sidecar", "check", "[--percent", "P]"],
                                  ["sidecar", "query", "SELECT 1", "--limit", "5"], ["apply"]]
    assert _split(["sidecar", "check", "[--percent", "P]"]) == (["sidecar", "check"],
                                                               ["--percent"])


def test_a_subcommand_missing_from_the_readme_is_reported():
    readme = read("README.md").replace("cjo funnel", "cjo journeys")
    shown = {argv[0] for argv in cjo_commands(readme)}
    assert [c for c in subcommands() if c not in shown] == ["funnel"]


def test_a_missing_make_target_is_reported():
    problems = make_problems("Run `make deploy`.\n\n    make demo\n", read("Makefile"))
    assert problems == ["`make deploy`: no such target in the Makefile"]


def test_a_topic_outside_the_catalogue_is_reported():
    text = "Counts go to `<app>.event-counts`; produce to cjo.events, not cjo.kafka_io."
    assert topic_problems(text) == [
        "<app>.event-counts: not in the topic catalogue (topology/pipeline/topics.py)"]
    assert topic_problems("`<app>-sessions-changelog`") != []


def test_a_topic_removed_from_the_catalogue_is_reported():
    catalogue = [s for s in CATALOGUE if s.name != "journey-transitions"]
    assert topic_problems(read("README.md"), catalogue) == [
        "<app>.journey-transitions: not in the topic catalogue (topology/pipeline/topics.py)"
    ] * read("README.md").count("<app>.journey-transitions")


def test_a_topic_left_out_of_a_table_or_paired_with_another_schema_is_reported():
    doc = read("schemas/README.md")
    row = next(line for line in doc.splitlines() if "<app>.journey-transitions" in line)
    assert coverage_problems(doc.replace(row + "\n", "")) == [
        "topic journey-transitions of the catalogue is not named"]
    swapped = doc.replace("(`activation.avsc`)", "(`segment_change.avsc`)")
    assert table_problems(swapped) == [
        "activations: the catalogue's schema is activation.avsc, the table says segment_change"]
    readme = read("README.md").replace("| `cjo.Activation`:", "| `cjo.SegmentChange`:")
    assert table_problems(readme) == [
        "activations: the catalogue's schema is activation.avsc, the table says segment_change"]


def test_a_missing_schema_file_or_record_is_reported():
    text = ("`cjo.EventCounted` (`event_counted.avsc`), `schemas/released/event.v9.avsc`, "
            "[docs](docs/nothing.md), (schemas/nothing.json), `event.avsc`")
    assert record_problems(text) == ["cjo.EventCounted: no such record in schemas/"]
    assert file_problems(text, "schemas/README.md") == [
        "event_counted.avsc: no such file", "schemas/released/event.v9.avsc: no such file",
        "schemas/nothing.json: no such file", "docs/nothing.md: no such file"]


def test_a_configuration_table_out_of_step_with_the_code_is_reported():
    readme, defaults = read("README.md"), Settings.from_env({}).to_env()
    row = next(line for line in readme.splitlines() if line.startswith("| `CJO_SNAPSHOT_CHUNK`"))
    heap = "| `CJO_BROKER_HEAP` |"
    doctored = (readme.replace(row + "\n", "")
                .replace("| `CJO_PARTITIONS` | `8` |", "| `CJO_PARTITIONS` | `16` |")
                .replace(heap, "| `CJO_NOPE` | `1` | x |\n" + heap))
    assert config_problems(doctored, variables_read(), defaults) == [
        "CJO_NOPE: in the Configuration table, read by no code",
        "CJO_SNAPSHOT_CHUNK: read by the code, missing from the Configuration table",
        "CJO_PARTITIONS: the table's default is 16, Settings has '8'"]


def test_a_metric_or_view_the_worker_lacks_is_reported():
    readme = read("README.md").replace("`cjo_events_total`", "`cjo_events`")
    readme += ("\n    curl 127.0.0.1:6066/nope\n"
               "    curl 127.0.0.1:6066/journeys/x/funnel?version=2\n")
    assert metric_problems(readme + " `cjo_nope_total`", metric_names()) == [
        "cjo_events: the worker has no such metric",
        "cjo_nope_total: the worker has no such metric",
        "cjo_events_total: a metric of the worker the README does not name"]
    assert view_problems(readme, view_paths()) == ["/nope: no view serves it"]
