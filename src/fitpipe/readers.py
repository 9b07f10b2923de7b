"""Read-only logins for dashboards and analysts, members of the fitpipe_readonly role
(migrations/0005_readonly_role.sql)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from fitpipe.errors import BadInput, SchemaError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# The mark on roles fitpipe created (COMMENT ON ROLE), so create-reader never takes over another role.
READER_MARK = "fitpipe read-only login (fitpipe create-reader)"


def _why_not_a_pure_reader(conn: psycopg.Connection, name: str) -> str | None:
    """What an existing role may do beyond reading fitpipe's tables, or None for a pure reader."""
    attributes = conn.execute(
        "SELECT rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)
    ).fetchone() or (False, False, False, False)
    for allowed, what in zip(
        attributes, ("create roles", "create databases", "replicate", "bypass row security"), strict=True
    ):
        if allowed:
            return f"it may {what}"
    other_roles = [
        r
        for (r,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s AND g.rolname <> 'fitpipe_readonly' "
            "ORDER BY 1",
            (name,),
        )
    ]
    if other_roles:
        return f"it is a member of {', '.join(other_roles)}"
    writable = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND (pg_get_userbyid(c.relowner) = %s "
        "     OR has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')) "
        "ORDER BY 1 LIMIT 1",
        (name, name),
    ).fetchone()
    if writable:
        return f"it may change {writable[0]}"
    may_create = conn.execute(
        "SELECT has_schema_privilege(%s, 'public', 'CREATE') "
        "OR has_database_privilege(%s, current_database(), 'CREATE')",
        (name, name),
    ).fetchone()
    if may_create and may_create[0]:
        return "it may create objects in this database"
    return None


# Limits on every reader login: a dashboard viewer's query or its connections must not starve the loader.
READER_CONNECTION_LIMIT = 10
READER_STATEMENT_TIMEOUT = "2min"


def _why_not_adoptable(conn: psycopg.Connection, name: str, marked: bool) -> str | None:
    """Why an existing role may not become (or stay) a reader login, or None.

    Resetting the password of a role hands its rights to whoever holds the reader password, so
    only a role that has no rights but reading fitpipe's tables may be adopted: one that owns
    nothing anywhere on the server (no database, no object in any database), has no members (a
    group role would turn its members into readers of everything) and can log in already.
    """
    owned = conn.execute(
        """
        SELECT coalesce(
            (SELECT 'the database ' || d.datname FROM pg_database d WHERE d.datdba = r.oid ORDER BY 1 LIMIT 1),
            (SELECT 'objects in another database' FROM pg_shdepend s
             WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = r.oid AND s.deptype = 'o' LIMIT 1)),
            r.rolcanlogin,
            (SELECT string_agg(m.rolname, ', ' ORDER BY m.rolname) FROM pg_auth_members a
             JOIN pg_roles m ON m.oid = a.member WHERE a.roleid = r.oid),
            pg_has_role(r.oid, 'fitpipe_readonly', 'MEMBER')
        FROM pg_roles r WHERE r.rolname = %s
        """,
        (name,),
    ).fetchone()
    if owned is None:
        return "it was dropped meanwhile"
    what_it_owns, can_log_in, members, reads_already = owned
    if what_it_owns:
        return f"it owns {what_it_owns}"
    if members:
        return f"it is a group role (members: {members})"
    if not can_log_in:
        return "it is a group role that cannot log in"
    beyond_reading = _why_not_a_pure_reader(conn, name)
    if beyond_reading or marked or reads_already:
        return beyond_reading
    return "it is not a fitpipe reader"


def _password_verifier(conn: psycopg.Connection, name: str, password: str) -> str:
    """The SCRAM verifier libpq computes on this side: the password itself never reaches the server
    (nor its log, with log_statement=ddl)."""
    return conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()


def create_reader(conn: psycopg.Connection, name: str, password: str) -> bool:
    """Create the login (or reset its password) and make it a member of fitpipe_readonly.

    Only a new name, or a role fitpipe made a reader (see _why_not_adoptable), becomes a reader:
    never a superuser, a role that owns a database or objects, or a group role. The login gets a
    connection limit and a statement timeout. Returns True when the login was created, False
    when it existed.
    """
    if not _ROLE_NAME.match(name):
        raise BadInput(f"reader name must be lower-case letters, digits and _, got {name!r}")
    if len(password) < 8:
        raise BadInput("the reader's password must have at least 8 characters")
    verifier = _password_verifier(conn, name, password)
    with conn.transaction():
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'fitpipe_readonly'").fetchone():
            raise SchemaError(
                "role fitpipe_readonly does not exist; run `fitpipe init-db` as a user that may create roles"
            )
        exists = conn.execute(
            "SELECT rolsuper, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (name,)
        ).fetchone()
        if exists and exists[0]:
            raise BadInput(f"{name} is a superuser; choose another name for a read-only login")
        if exists:
            marked = exists[1] == READER_MARK
            reason = _why_not_adoptable(conn, name, marked)
            if reason:
                made_by = "was made a reader by fitpipe" if marked else "was not created by fitpipe"
                raise BadInput(
                    f"role {name} exists, {made_by}, and {reason}; choose another name for a read-only login"
                )
        statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
        role = sql.Identifier(name)
        conn.execute(sql.SQL(statement).format(role, sql.Literal(verifier)))
        conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(role, sql.Literal(READER_CONNECTION_LIMIT)))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(role, sql.Literal(READER_STATEMENT_TIMEOUT))
        )
        conn.execute(sql.SQL("GRANT fitpipe_readonly TO {}").format(role))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(READER_MARK)))
    return not exists
