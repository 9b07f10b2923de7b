"""Participants and secrets: withdrawal with deletion, encrypted credentials, key rotation, and
the read-only role kept away from secrets."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import psycopg
import pytest

from fitpipe.participants import add_participant
from fitpipe.secrets import Keyring, key_id, load_secret, new_key
from support.cli import fitpipe, one_error_line, run_fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

START = dt.date(2024, 1, 1)
TOKEN = "1//0gRefreshTokenThatMustNeverLeak-Xy7"


def tables_with_user_id(db) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' AND c.column_name = 'user_id' "
            "AND t.table_type = 'BASE TABLE' ORDER BY 1"
        )
    ]


def checksums(db, user_id: int) -> dict[str, tuple]:
    return {
        table: db.execute(
            f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t WHERE user_id = %s",
            (user_id,),
        ).fetchone()
        for table in tables_with_user_id(db)
    }


def test_withdraw_with_delete_data_leaves_no_row_of_the_participant(db, database_url, monkeypatch):
    for user_id in (1, 2, 3):
        add_participant(db, user_id, source="synthetic", timezone="Europe/Berlin", study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-04")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--workers", "2")
    fitpipe(database_url, "impute", "--metric", "heart_rate", "--method", "linear")
    before = {u: checksums(db, u) for u in (1, 3)}
    assert before[1]["heart_rate"][0] > 0 and checksums(db, 2)["rollup_1min"][0] > 0

    refused = fitpipe(database_url, "participants", "withdraw", "2", "--delete-data", ok=False)
    one_error_line(refused, "without --yes", code=2)
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2").fetchone()[0] > 0
    result = fitpipe(database_url, "participants", "withdraw", "2", "--delete-data", "--yes")
    assert "participant 2 withdrawn; deleted" in result.stdout
    leftovers = {table: n for table, (n, _) in checksums(db, 2).items() if n}
    assert leftovers == {}
    assert {u: checksums(db, u) for u in (1, 3)} == before


def keyed(monkeypatch) -> str:
    key = new_key()
    monkeypatch.setenv("FITPIPE_SECRET_KEY", key)
    return key


def test_a_secret_stored_through_the_cli_is_never_in_plain_text(db, database_url, monkeypatch, tmp_path):
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=START)
    keyed(monkeypatch)
    stored = run_fitpipe(database_url, "secrets", "set", "--user", "1", input=TOKEN + "\n")
    assert stored.returncode == 0, stored.stderr
    outputs = [stored.stdout + stored.stderr]
    for args in (
        ["status", "--json"],
        ["status"],
        ["participants", "list", "--json"],
        ["participants", "list"],
        ["adherence", "--json", "--as-of", "2024-01-01"],
    ):
        result = run_fitpipe(database_url, *args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert all(TOKEN not in text for text in outputs)
    assert db.execute("SELECT credential_state FROM participant_sources WHERE user_id = 1").fetchone()[0] == "ok"

    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    dump = subprocess.run([pg_dump, "--data-only", database_url], capture_output=True, text=True, check=True).stdout
    assert "source_credentials" in dump and TOKEN not in dump
    with psycopg.connect(database_url) as conn:
        assert load_secret(conn, Keyring.from_environment(), 1, "synthetic") == TOKEN


def test_key_rotation_re_encrypts_every_secret(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=START)
    old = keyed(monkeypatch)
    assert run_fitpipe(database_url, "secrets", "set", "--user", "1", input=TOKEN).returncode == 0
    new = new_key()
    monkeypatch.setenv("FITPIPE_SECRET_KEY", f"{new},{old}")
    result = fitpipe(database_url, "secrets", "rotate")
    assert f"re-encrypted 1 secret(s) with key {key_id(new.encode())}" in result.stdout
    monkeypatch.setenv("FITPIPE_SECRET_KEY", new)
    with psycopg.connect(database_url) as conn:
        assert load_secret(conn, Keyring.from_environment(), 1, "synthetic") == TOKEN
    monkeypatch.setenv("FITPIPE_SECRET_KEY", old)
    with psycopg.connect(database_url) as conn, pytest.raises(Exception, match="cannot be decrypted"):
        load_secret(conn, Keyring.from_environment(), 1, "synthetic")


def test_a_missing_key_is_one_line_and_only_for_commands_that_need_it(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=START)
    monkeypatch.delenv("FITPIPE_SECRET_KEY", raising=False)
    monkeypatch.delenv("FITPIPE_SECRET_KEY_FILE", raising=False)
    result = run_fitpipe(database_url, "secrets", "set", "--user", "1", input=TOKEN)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "FITPIPE_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-02")
    fitpipe(database_url, "ingest", "--days", "1")


def test_the_read_only_role_cannot_read_secrets(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=START)
    keyed(monkeypatch)
    assert run_fitpipe(database_url, "secrets", "set", "--user", "1", input=TOKEN).returncode == 0
    with psycopg.connect(database_url) as conn:
        conn.execute("SET ROLE fitpipe_readonly")
        assert conn.execute("SELECT count(*) FROM participant_sources").fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM source_credentials")
        conn.rollback()
        conn.execute("SET ROLE fitpipe_readonly")
        # The adherence function the dashboards call still sees the credential state.
        flags = conn.execute("SELECT flag_no_credentials FROM fitpipe_adherence('2024-01-01')").fetchall()
        assert flags == [(False,)]
