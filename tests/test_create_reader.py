"""create-reader: a login that reads but cannot write, refused when the password is missing or
short or the role already has write grants, adopted when it is a pure reader."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.cli import one_error_line, run_fitpipe
from support.db import ADMIN_URL


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
        line = one_error_line(result, code=2)
        assert "not created by fitpipe" in line and "users" in line
        assert "hijacked-password" not in result.stderr + result.stdout
        assert can_log_in(url, writer, "writer-password-1"), "the role's password was reset"
        assert not can_log_in(url, writer, "hijacked-password")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {writer}")
            conn.execute(f"DROP ROLE {writer}")


@pytest.mark.slow
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


@pytest.mark.slow
def test_create_reader_gives_a_login_that_reads_but_cannot_write(cohort):
    import os

    login = f"reader_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FITPIPE_READER_PASSWORD": "reader-password-1"}
    result = CliRunner().invoke(app, ["--database-url", cohort, "create-reader", login], env=env)
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    again = CliRunner().invoke(app, ["--database-url", cohort, "create-reader", login], env=env)
    assert again.exit_code == 0 and "updated" in again.output
    reader_url = cohort.replace("fitpipe:fitpipe@", f"{login}:reader-password-1@", 1)
    try:
        with psycopg.connect(reader_url) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM fitpipe_adherence('2024-01-07')").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM heart_rate").fetchone()[0] > 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM heart_rate")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{login}"')
            admin.execute(f'DROP ROLE "{login}"')


@pytest.mark.slow
def test_create_reader_refuses_a_missing_or_short_password(cohort):
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "create-reader", "someone"], env={"FITPIPE_READER_PASSWORD": ""}
    )
    assert result.exit_code == 2 and "FITPIPE_READER_PASSWORD" in result.output
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "create-reader", "someone"], env={"FITPIPE_READER_PASSWORD": "short"}
    )
    assert result.exit_code == 2 and "8 characters" in result.output
