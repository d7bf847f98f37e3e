"""SQL the sidecar did not write (batch audiences, `cjo sidecar query`) reads the sidecar's tables
and nothing else. Each attack is refused twice: by the check when the definitions are applied
(a clear message naming what it reads), and by the locked DuckDB connection the SQL runs on,
which cannot reach a file, a URL or an extension whatever the SQL says. Also the smaller
items of the same audit: what `cjo sidecar query` prints, a second `cjo sidecar run`, the
funnel page's 404 and version, aiohttp's own 400."""
from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time

import duckdb
import pytest
from aiohttp import web

from cjo.cli import main
from cjo.settings import Settings
from sidecar import sandbox
from sidecar.archive import EventArchive
from sidecar.audiences import _select, compute, prepare
from sidecar.follower import archive_path, database_path
from sidecar.query import printable
from sidecar.store import LIVE, SparseStore
from state.definitions import DefinitionError, Segment, load_definitions
from state.sql import read_only_select_problem
from topology.ops.views import missing_page, requested_version
from topology.ops.web_access import web_options

TOKEN = "secret-token-0123456789abcdef"

# (sql, what the check's message says): each reads, writes or loads outside the sidecar.
ATTACKS = [
    ("SELECT line AS profile_id FROM read_csv('/etc/passwd', columns={'line': 'VARCHAR'}, "
     "delim='\x01', header=false)", "read_csv() reads outside the sidecar's tables"),
    ("SELECT content AS profile_id FROM read_text('/proc/self/environ')",
     "read_text() reads outside the sidecar's tables"),
    ("SELECT file AS profile_id FROM glob('/*')", "glob() reads outside the sidecar's tables"),
    ("SELECT * FROM read_parquet('https://example.invalid/x.parquet')",
     "read_parquet() reads outside the sidecar's tables"),
    ("SELECT profile_id FROM journey_state WHERE profile_id IN "
     "(SELECT content FROM read_blob('/etc/hostname'))", "read_blob() reads outside"),
    ("SELECT Delimiter AS profile_id FROM sniff_csv('/etc/passwd')", "sniff_csv() reads outside"),
    ("SELECT * FROM parquet_scan('/etc/passwd')", "parquet_scan() reads outside"),
    ("WITH x AS (SELECT * FROM read_json_auto('/etc/x.json')) SELECT * FROM x",
     "read_json_auto() reads outside"),
    ("COPY (SELECT profile_id FROM journey_state) TO '{tmp}/copied.csv'",
     "only a SELECT is accepted, got COPY"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "only a SELECT is accepted, got ATTACH"),
    ("PRAGMA enable_profiling", "only a SELECT is accepted, got PRAGMA"),
    ("PRAGMA profile_output='{tmp}/profile.json'", "only a SELECT is accepted, got SET"),
    ("SET enable_external_access = true", "only a SELECT is accepted, got SET"),
    ("RESET lock_configuration", "only a SELECT is accepted, got SET"),
    ("INSTALL httpfs", "only a SELECT is accepted, got LOAD"),
    ("LOAD httpfs", "only a SELECT is accepted, got LOAD"),
    ("EXPORT DATABASE '{tmp}/exported'", "only a SELECT is accepted, got EXPORT"),
    ("SELECT profile_id FROM journey_state; SELECT line AS profile_id FROM "
     "read_csv('/etc/passwd', columns={'line': 'VARCHAR'})", "expected one statement, got 2"),
    ("SELECT * FROM '/etc/passwd'", "FROM '/etc/passwd' names a file or URL"),
    ("SELECT * FROM 'https://example.invalid/x.csv'", "names a file or URL"),
]
IDS = [sql.split("(")[0].split(" '")[0][:40] for sql, _ in ATTACKS]


@pytest.fixture
def sidecar(tmp_path):
    """A sidecar database with one profile and an (empty) event archive, closed."""
    settings = Settings(app_id="safety", data_dir=tmp_path)
    database_path(settings).parent.mkdir(parents=True)
    store = SparseStore(str(database_path(settings)))
    EventArchive(store.db, archive_path(settings))
    store.db.execute(f"INSERT INTO {LIVE} (profile_id, key) VALUES ('p1', 'segment:x')")
    store.db.close()
    return settings


@pytest.fixture
def locked(sidecar):
    db = sandbox.connect(database_path(sidecar), archive_path(sidecar))
    yield db
    db.close()


@pytest.fixture
def env(sidecar, monkeypatch):
    for name, value in sidecar.to_env().items():
        monkeypatch.setenv(name, value)
    return sidecar


@pytest.mark.parametrize("sql, problem", ATTACKS, ids=IDS)
def test_the_check_refuses_each_attack_and_says_what_it_reads(sql, problem, tmp_path):
    assert problem in read_only_select_problem(sql.replace("{tmp}", str(tmp_path)))
    with pytest.raises(DefinitionError) as info:
        load_definitions({"segments": [{"id": "leak", "sql": sql.replace("{tmp}", str(tmp_path))}]})
    ((path, said),) = info.value.errors
    assert path == "segments[0].sql" and problem in said


@pytest.mark.parametrize("sql, problem", ATTACKS, ids=IDS)
def test_the_locked_connection_refuses_each_attack_and_nothing_comes_back(sql, problem, locked,
                                                                         tmp_path):
    with pytest.raises(duckdb.Error) as info:
        locked.execute(sql.replace("{tmp}", str(tmp_path))).fetchall()
    assert any(said in str(info.value) for said in (
        "disabled by configuration", "disabled through configuration",
        "the configuration has been locked", "does not exist")), info.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sidecar"]  # nothing written
    settings = dict(locked.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert (settings["enable_external_access"], settings["lock_configuration"]) == \
        ("false", "true")


@pytest.mark.parametrize("sql", [a[0] for a in ATTACKS if a[0].startswith("SELECT")],
                         ids=[i for i, a in zip(IDS, ATTACKS) if a[0].startswith("SELECT")])
def test_an_audience_that_got_past_the_check_still_reads_nothing(sql, locked):
    prepare(locked)
    with pytest.raises(duckdb.Error):
        _select(locked, sql)  # what the runner does with the SELECT, the check skipped


def test_a_url_is_refused_before_any_connection_or_download(locked):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        started = time.monotonic()
        for url in (f"http://127.0.0.1:{port}/x.parquet", "https://example.invalid/x.parquet"):
            with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
                locked.execute(f"SELECT * FROM read_parquet('{url}')").fetchall()
        with pytest.raises(duckdb.PermissionException):
            locked.execute("INSTALL httpfs")  # nothing fetched from the extension repository
        assert time.monotonic() - started < 5
        with pytest.raises(socket.timeout):
            server.accept()  # nobody came


def test_the_sidecars_own_tables_and_archive_are_read_on_the_locked_connection(sidecar,
                                                                                tmp_path):
    store = SparseStore(str(database_path(sidecar)))
    archive = EventArchive(store.db, archive_path(sidecar))
    archive.add(0, 0, [("p1", "e1", 0, "purchase", 5, "amount", None, None, 12.5, None, 0, 0, 0, 0)],
                1)
    store.db.close()
    db = sandbox.connect(database_path(sidecar), archive_path(sidecar))
    try:
        readme = ("SELECT profile_id FROM events WHERE name = 'purchase' AND field = 'amount' "
                  "AND time > 0 GROUP BY profile_id QUALIFY percent_rank() OVER "
                  "(ORDER BY sum(v_double) DESC) < 0.1")
        assert read_only_select_problem(readme) is None
        assert db.execute(readme).fetchall() == [("p1",)]
        prepare(db)
        run = compute(db, Segment("top", None, sql=readme))
        assert run.entered == ["p1"]
        assert db.execute(f"SELECT profile_id FROM {LIVE}").fetchall() == [("p1",)]
    finally:
        db.close()


def test_audience_sql_is_never_run_on_a_connection_that_is_not_locked():
    db = duckdb.connect()
    db.execute("CREATE TABLE events (profile_id VARCHAR)")
    prepare(db)
    with pytest.raises(RuntimeError, match="locked connection"):
        compute(db, Segment("x", None, sql="SELECT profile_id FROM events"))


def test_names_outside_the_sidecars_tables_are_refused_and_its_own_accepted():
    assert "FROM duckdb_settings is not one of the sidecar's tables" in \
        read_only_select_problem("SELECT * FROM duckdb_settings")
    assert "information_schema.tables is not one" in \
        read_only_select_problem("SELECT * FROM information_schema.tables")
    assert "query_table() reads outside" in \
        read_only_select_problem("SELECT * FROM query_table('journey_state')")
    for ok in ("WITH recent AS (SELECT profile_id FROM events) SELECT * FROM Recent",
               "SELECT j.profile_id FROM journey_state j JOIN snapshot_profiles USING "
               "(profile_id)", "SELECT unnest(['a', 'b']) AS profile_id",
               "SELECT 'p' || range AS profile_id FROM range(3)"):
        assert read_only_select_problem(ok) is None, ok


# ---------------------------------------------------------------- cjo sidecar query / run


def test_cjo_sidecar_query_refuses_a_file_read_in_one_line(env, capsys):
    assert main(["sidecar", "query", "SELECT * FROM read_csv('/etc/passwd')"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and "root:" not in err
    assert err.count("\n") == 1 and err.startswith("cjo sidecar query: read_csv() reads outside")


def test_cjo_sidecar_query_past_the_check_is_refused_by_the_connection(env, capsys,
                                                                        monkeypatch):
    monkeypatch.setattr("sidecar.query.read_only_select_problem", lambda text: None)
    assert main(["sidecar", "query", "SELECT * FROM read_csv('/etc/passwd')"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and "root:" not in err and "disabled by configuration" in err
    assert err.count("\n") == 1


def test_cjo_sidecar_query_escapes_control_and_bidi_characters(env, capsys):
    store = SparseStore(str(database_path(env)))
    store.db.execute(f"INSERT INTO {LIVE} (profile_id, key) VALUES (?, 'segment:x')",
                     ["a\x00b\x1b[2J\u202ec\u2028d\r"])
    store.db.close()
    assert main(["sidecar", "query", "SELECT profile_id AS \"id\x1b[1m\" FROM journey_state "
                                     "ORDER BY 1"]) == 0
    out = capsys.readouterr().out
    assert "a\\x00b\\x1b[2J\\u202ec\\u2028d\\x0d" in out and "id\\x1b[1m" in out
    assert not any(ch in out for ch in "\x00\x1b\u202e\u2028\r")
    assert printable("Müller 東京 ok") == "Müller 東京 ok"


def test_a_second_sidecar_run_says_who_holds_the_lock(env, capsys):
    path = database_path(env)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; db = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["sidecar", "run", "--once"]) != 0
        out, err = capsys.readouterr()
        assert err == f"cjo sidecar run: another sidecar holds the lock on {path}\n"
        assert main(["sidecar", "check"]) != 0
        assert f"holds the lock on {path}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- web views


def test_the_funnel_pages_404_escapes_what_the_url_said():
    page = missing_page("No journey '<script>alert(1)</script>'")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("raw", ["abc", "", "-1", "1.5", " 2", "١", "9" * 12])
def test_a_version_that_is_not_a_whole_number_is_a_bad_request(raw):
    with pytest.raises(ValueError, match="whole number"):
        requested_version(raw, 3)


def test_a_version_is_the_number_asked_for_or_the_latest():
    assert (requested_version("2", 3), requested_version(None, 3)) == (2, 3)


async def _ok(request):
    return web.Response(text="ok")


def test_a_request_aiohttp_cannot_read_is_answered_without_repeating_it(caplog):
    settings = Settings(read_tokens=(TOKEN,))

    async def ask(head: str) -> bytes:
        app = web.Application(**web_options(settings))
        app.router.add_get("/x", _ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = site._server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n"
                         .encode())
            answer = await reader.read()
            writer.close()
            return answer
        finally:
            await runner.cleanup()

    caplog.set_level(logging.DEBUG)
    for head in (f"Authorization: Bearer {TOKEN}{'x' * 9000}\r\n",  # over the 8 KB line
                 f"Authorization: Bearer {TOKEN}\r\nX-Pad: {'y' * 9000}\r\n",
                 f"Authorization: Bearer {TOKEN}\r\n" + "".join(f"X-{i}: {TOKEN}\r\n"
                                                             for i in range(200)),
                 f"X-Token {TOKEN}\r\n"):  # a malformed line
        answer = asyncio.run(ask(head))
        assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400")
        assert TOKEN.encode() not in answer and b"x" * 50 not in answer, answer
        assert b"the request could not be read" in answer
    assert TOKEN not in caplog.text
    assert asyncio.run(ask(f"Authorization: Bearer {TOKEN}\r\n")).endswith(b"ok")
