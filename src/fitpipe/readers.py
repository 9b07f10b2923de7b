"""Read-only logins for dashboards and analysts, members of the fitpipe_readonly role
(migrations/0005_readonly_role.sql)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from fitpipe.db import one_row
from fitpipe.errors import BadInput, SchemaError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# The mark on roles fitpipe created (COMMENT ON ROLE), so create-reader never takes over another role.
READER_MARK = "fitpipe read-only login (fitpipe create-reader)"


def _why_not_a_pure_reader(conn: psycopg.Connection, name: str) -> str | None:
    """What an existing role may do beyond reading fitpipe's tables, or None for a pure reader."""
    attributes = one_row(
        conn.execute(
            "SELECT rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)
        )
    )
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
    if one_row(
        conn.execute(
            "SELECT has_schema_privilege(%s, 'public', 'CREATE') "
            "OR has_database_privilege(%s, current_database(), 'CREATE')",
            (name, name),
        )
    )[0]:
        return "it may create objects in this database"
    return None


def create_reader(conn: psycopg.Connection, name: str, password: str) -> bool:
    """Create the login (or reset its password) and make it a member of fitpipe_readonly.

    An existing role is only taken over when fitpipe created it (its COMMENT says so) or when
    it can do nothing but read; otherwise resetting its password would hand out its other rights.
    Returns True when the login was created, False when it existed.
    """
    if not _ROLE_NAME.match(name):
        raise BadInput(f"reader name must be lower-case letters, digits and _, got {name!r}")
    if len(password) < 8:
        raise BadInput("the reader's password must have at least 8 characters")
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
        if exists and exists[1] != READER_MARK:
            reason = _why_not_a_pure_reader(conn, name)
            if reason:
                raise BadInput(
                    f"role {name} exists, was not created by fitpipe, and {reason}; "
                    "choose another name for a read-only login"
                )
        statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
        conn.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT fitpipe_readonly TO {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(READER_MARK)))
    return not exists
