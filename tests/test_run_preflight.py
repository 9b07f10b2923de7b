"""What is checked before a run starts (issue 21, Lows): a missing or wrong secret key is one line
and exit 2 before any day loads, `secrets rotate` without the old key changes nothing, and a
backfill range before every participant's study start says so."""

from __future__ import annotations

from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.secrets import new_key


def cli(url: str, *args: str, env: dict[str, str], stdin: str | None = None):
    return CliRunner().invoke(app, ["--database-url", url, *args], env=env, input=stdin)


def one_line(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def enrolled_with_secret(url: str, key: str) -> None:
    env = {"FITPIPE_SECRET_KEY": key}
    added = cli(url, "participants", "add", "1", "--source", "google-health", "--timezone", "UTC",
                "--study-start", "2024-03-01", env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    stored = cli(url, "secrets", "set", "--user", "1", env=env, stdin='{"refresh_token": "not a real one"}')
    assert stored.exit_code == 0, stored.output


def test_a_wrong_or_missing_key_stops_a_run_before_any_day(database_url, db):
    enrolled_with_secret(database_url, new_key())
    backfill = ("backfill", "--start", "2024-03-01", "--end", "2024-03-02", "--workers", "1")
    one_line(cli(database_url, *backfill, env={"FITPIPE_SECRET_KEY": new_key(), "FITPIPE_TODAY": "2024-03-05"}), 2,
             "participant 1's stored secret cannot be decrypted")  # fmt: skip
    one_line(cli(database_url, *backfill, env={"FITPIPE_SECRET_KEY": "", "FITPIPE_TODAY": "2024-03-05"}), 2,
             "this needs the secret key")  # fmt: skip
    assert db.execute("SELECT count(*) FROM ingest_runs").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM ingested_days").fetchone() == (0,)


def test_rotate_without_the_old_key_is_one_line_and_changes_nothing(database_url, db):
    old, new = new_key(), new_key()
    enrolled_with_secret(database_url, old)
    before = db.execute("SELECT ciphertext, key_id FROM source_credentials").fetchall()
    one_line(
        cli(database_url, "secrets", "rotate", env={"FITPIPE_SECRET_KEY": new}), 2, "new key, a comma, then the old"
    )
    assert db.execute("SELECT ciphertext, key_id FROM source_credentials").fetchall() == before
    rotated = cli(database_url, "secrets", "rotate", env={"FITPIPE_SECRET_KEY": f"{new},{old}"})
    assert rotated.exit_code == 0, rotated.output
    assert db.execute("SELECT key_id FROM source_credentials").fetchall() != [row[1:] for row in before]


def test_a_backfill_range_before_every_study_start_says_so(database_url, db):
    env = {"FITPIPE_TODAY": "2024-03-10"}
    added = cli(database_url, "participants", "add", "1", "--source", "synthetic", "--timezone", "UTC",
                "--study-start", "2024-03-01", env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    before = cli(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-31", env=env)
    one_line(before, 2, "--end 2024-01-31 is before the study start of every participant asked for", "2024-03-01")
    assert db.execute("SELECT count(*) FROM ingest_runs").fetchone() == (0,)
