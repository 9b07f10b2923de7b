"""Read-only logins for dashboards and analysts, members of the fitpipe_readonly role
(migrations/0005_readonly_role.sql)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from fitpipe.errors import BadInput, SchemaError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_reader(conn: psycopg.Connection, name: str, password: str) -> bool:
    """Create the login (or reset its password) and make it a member of fitpipe_readonly.

    Returns True when the login was created, False when it existed.
    """
    if not _ROLE_NAME.match(name):
        raise BadInput(f"reader name must be lower-case letters, digits and _, got {name!r}")
    if len(password) < 8:
        raise BadInput("the reader's password must have at least 8 characters")
    with conn.transaction():
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'fitpipe_readonly'").fetchone():
            raise SchemaError("role fitpipe_readonly does not exist; run `fitpipe init-db` as a user that may create roles")
        exists = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if exists and exists[0]:
            raise BadInput(f"{name} is a superuser; choose another name for a read-only login")
        statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
        conn.execute(sql.SQL(statement).format(sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT fitpipe_readonly TO {}").format(sql.Identifier(name)))
    return not exists
