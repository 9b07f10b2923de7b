"""fitpipe create-reader: only new names or fitpipe's own readers become read-only logins; a
reader cannot fill the disk or hold the server; its password never reaches the server."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.readers import READER_CONNECTION_LIMIT, READER_STATEMENT_TIMEOUT, create_reader

PASSWORD = "reader-password-1"


@pytest.fixture
def roles(database_url):
    """Names of scratch roles (and databases) to drop after the test."""
    made: dict[str, list[str]] = {"roles": [], "databases": []}
    yield made
    with psycopg.connect(database_url, autocommit=True) as conn:
        for database in made["databases"]:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        for role in made["roles"]:
            if role_exists(conn, role):
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')


def role_exists(conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def scratch(roles, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    roles["roles"].append(name)
    return name


def create(url: str, name: str):
    return CliRunner().invoke(
        app, ["--database-url", url, "create-reader", name], env={"FITPIPE_READER_PASSWORD": PASSWORD}
    )


def login_url(url: str, name: str, password: str) -> str:
    return url.replace("fitpipe:fitpipe@", f"{name}:{password}@", 1)


def can_log_in(url: str, name: str, password: str) -> bool:
    try:
        with psycopg.connect(login_url(url, name, password)):
            return True
    except psycopg.OperationalError:
        return False


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert PASSWORD not in result.stdout + result.stderr


def test_a_role_that_owns_another_database_is_never_taken_over(database_url, db, roles):
    owner = scratch(roles, "owner")
    database = f"owned_{uuid.uuid4().hex[:8]}"
    roles["databases"].append(database)
    db.execute(f"CREATE ROLE {owner} LOGIN PASSWORD 'owner-password-1'")
    db.execute(f"CREATE DATABASE {database} OWNER {owner}")

    refused(create(database_url, owner), f"role {owner} exists", f"it owns the database {database}")

    assert can_log_in(database_url, owner, "owner-password-1"), "the owner's password was reset"
    assert not can_log_in(database_url, owner, PASSWORD)


def test_a_group_role_is_never_turned_into_a_reader_login(database_url, db, roles):
    group, member, lone = scratch(roles, "group"), scratch(roles, "member"), scratch(roles, "nologin")
    db.execute(f"CREATE ROLE {group} NOLOGIN")
    db.execute(f"CREATE ROLE {member} LOGIN PASSWORD 'member-password-1'")
    db.execute(f"GRANT {group} TO {member}")
    db.execute(f"CREATE ROLE {lone} NOLOGIN")

    refused(create(database_url, group), f"it is a group role (members: {member})")
    refused(create(database_url, lone), "it is a group role that cannot log in")

    for name in (group, lone):
        can_login, reads = db.execute(
            "SELECT rolcanlogin, pg_has_role(oid, 'fitpipe_readonly', 'MEMBER') FROM pg_roles WHERE rolname = %s",
            (name,),
        ).fetchone()
        assert (can_login, reads) == (False, False), name
    assert not db.execute("SELECT pg_has_role(%s, 'fitpipe_readonly', 'MEMBER')", (member,)).fetchone()[0], (
        "the group's member became a reader"
    )


def test_a_plain_login_that_is_not_a_reader_is_refused(database_url, db, roles):
    plain = scratch(roles, "plain")
    db.execute(f"CREATE ROLE {plain} LOGIN PASSWORD 'plain-password-1'")
    refused(create(database_url, plain), "was not created by fitpipe", "it is not a fitpipe reader")
    assert can_log_in(database_url, plain, "plain-password-1")


def test_a_reader_login_has_limits_and_cannot_write_large_objects_or_temporary_tables(database_url, db, roles):
    reader = scratch(roles, "reader")
    created = create(database_url, reader)
    assert created.exit_code == 0, created.stderr
    limit, config = db.execute("SELECT rolconnlimit, rolconfig FROM pg_roles WHERE rolname = %s", (reader,)).fetchone()
    assert limit == READER_CONNECTION_LIMIT == 10
    assert config == [f"statement_timeout={READER_STATEMENT_TIMEOUT}"]
    with psycopg.connect(login_url(database_url, reader, PASSWORD), autocommit=True) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == READER_STATEMENT_TIMEOUT
        for statement in (
            "SELECT lo_from_bytea(0, 'x'::bytea)",
            "SELECT lo_create(0)",
            "SELECT lo_creat(-1)",
            "SELECT lo_put(1, 0, 'x'::bytea)",
            "CREATE TEMPORARY TABLE filler (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 0
    # fitpipe's own role keeps both rights.
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMPORARY TABLE mine (x int)")
        assert conn.execute("SELECT lo_from_bytea(0, 'x'::bytea)").fetchone()[0] > 0
        conn.rollback()


def test_the_reader_password_never_reaches_the_server(database_url, roles, tmp_path):
    """libpq's protocol trace holds every byte sent: the password must not be among them, only
    its SCRAM verifier, and the login works with the password."""
    reader = scratch(roles, "traced")
    trace = tmp_path / "trace"
    with psycopg.connect(database_url, autocommit=True) as conn, open(trace, "w") as out:
        conn.pgconn.trace(out.fileno())
        try:
            assert create_reader(conn, reader, PASSWORD) is True
        finally:
            conn.pgconn.untrace()
    sent = trace.read_text()
    assert "ALTER ROLE" in sent or "CREATE ROLE" in sent, "the trace holds the statements"
    assert PASSWORD not in sent
    assert "SCRAM-SHA-256$4096:" in sent
    assert can_log_in(database_url, reader, PASSWORD)
    assert not can_log_in(database_url, reader, PASSWORD + "x")
