"""Issue 13: the smaller findings of the adversarial probe, each against the real CLI and database.

Every bad input must give one line on stderr, a non-zero exit and no traceback.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from conftest import empty_database, fitpipe, run_fitpipe


@pytest.fixture(scope="module")
def seeded(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
    fitpipe(database_url, "seed-users", "--count", "1", "--start-date", "2024-01-01")
    return database_url


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# --- finding 4: create-reader must not take over a role fitpipe did not create ----------------

def can_log_in(url: str, login: str, password: str) -> bool:
    try:
        with psycopg.connect(url.replace("fitpipe:fitpipe@", f"{login}:{password}@", 1)):
            return True
    except psycopg.OperationalError:
        return False


def test_create_reader_refuses_an_existing_role_with_write_grants(seeded, monkeypatch):
    url = seeded
    writer = f"writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {writer} LOGIN PASSWORD 'writer-password-1'")
        conn.execute(f"GRANT INSERT, UPDATE ON users TO {writer}")
    try:
        monkeypatch.setenv("FITPIPE_READER_PASSWORD", "hijacked-password")
        result = run_fitpipe(url, "create-reader", writer)
        assert result.returncode == 2
        line = one_error_line(result)
        assert "not created by fitpipe" in line and "users" in line
        assert "hijacked-password" not in result.stderr + result.stdout
        assert can_log_in(url, writer, "writer-password-1"), "the role's password was reset"
        assert not can_log_in(url, writer, "hijacked-password")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {writer}")
            conn.execute(f"DROP ROLE {writer}")


def test_create_reader_adopts_a_pure_reader_and_renews_its_own(seeded, monkeypatch):
    url = seeded
    plain, own = f"plain_{uuid.uuid4().hex[:8]}", f"own_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {plain} LOGIN PASSWORD 'plain-password-1'")  # e.g. made by an older fitpipe
        conn.execute(f"GRANT fitpipe_readonly TO {plain}")
    try:
        monkeypatch.setenv("FITPIPE_READER_PASSWORD", "renewed-password")
        for login, verb in ((plain, "updated"), (own, "created"), (own, "updated")):
            result = run_fitpipe(url, "create-reader", login)
            assert result.returncode == 0, result.stderr
            assert f"{verb} read-only login {login}" in result.stdout
            assert can_log_in(url, login, "renewed-password")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for login in (plain, own):
                conn.execute(f"DROP ROLE IF EXISTS {login}")
