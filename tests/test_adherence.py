"""adherence: wear flags against the threshold, sleep capture, the no-recent-data flag, the table
and CSV, and bad thresholds refused, against the real database."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.cli import one_error_line, run_fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow


def adherence_json(url, *args):
    result = CliRunner().invoke(app, ["--database-url", url, "adherence", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def independent_wear_share(conn, user_id, days=7):
    minutes = conn.execute(
        "SELECT count(DISTINCT time_bucket('1 minute', ts)) FROM heart_rate "
        "WHERE user_id = %s AND ts >= '2024-01-01' AND ts < '2024-01-08'",
        (user_id,),
    ).fetchone()[0]
    return minutes / (days * 1440)


def test_wear_flags_follow_the_threshold(cohort):
    with psycopg.connect(cohort) as conn:
        shares = {u: independent_wear_share(conn, u) for u in (1, 2, 3)}
    assert shares[3] > 0.99, "a participant without wear gaps wears the device all the time"
    threshold = (min(shares.values()) + max(shares.values())) / 2
    report = adherence_json(cohort, "--as-of", "2024-01-07", "--min-wear", f"{threshold:.4f}")
    assert report["as_of"] == "2024-01-07"
    by_user = {p["user_id"]: p for p in report["participants"]}
    assert set(by_user) == {1, 2, 3}
    for user_id, share in shares.items():
        assert by_user[user_id]["wear_share"] == pytest.approx(share, abs=1e-4)
        assert by_user[user_id]["flag_low_wear"] == (share < threshold)
    assert any(p["flag_low_wear"] for p in by_user.values())
    assert not by_user[3]["flag_low_wear"]
    counts = [p["flag_count"] for p in report["participants"]]
    assert counts == sorted(counts, reverse=True), "worst first"


def test_sleep_capture_counts_main_sleeps_of_the_last_seven_nights(cohort):
    with psycopg.connect(cohort) as conn:
        expected = dict(
            conn.execute(
                "SELECT u.user_id, count(s.date_of_sleep) FROM users u LEFT JOIN sleep_sessions s "
                "ON s.user_id = u.user_id AND s.is_main_sleep AND s.duration_s >= 180 * 60 "
                "AND s.date_of_sleep BETWEEN '2024-01-01' AND '2024-01-07' GROUP BY u.user_id"
            ).fetchall()
        )
    report = adherence_json(cohort, "--as-of", "2024-01-07", "--min-nights", "7")
    for p in report["participants"]:
        assert p["nights_captured"] == expected[p["user_id"]]
        assert p["flag_low_sleep_capture"] == (expected[p["user_id"]] < 7)
    assert not any(p["flag_no_credentials"] for p in report["participants"]), "synthetic needs no credentials"


def test_no_recent_data_flag(cohort):
    recent = adherence_json(cohort, "--as-of", "2024-01-07", "--user", "3")["participants"][0]
    assert not recent["flag_no_recent_data"]
    late = adherence_json(cohort, "--as-of", "2024-01-10", "--user", "3")["participants"][0]
    assert late["flag_no_recent_data"]
    assert late["hours_since_data"] == pytest.approx(72, abs=0.1)


def test_adherence_table_and_csv(cohort):
    result = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--as-of", "2024-01-07"])
    assert result.exit_code == 0, result.output
    assert "worst first" in result.output and "always-worn" in result.output
    csv_out = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--csv", "--as-of", "2024-01-07"])
    lines = csv_out.output.strip().splitlines()
    assert lines[0].startswith("user_id,") and len(lines) == 4


def test_adherence_rejects_bad_thresholds(cohort):
    result = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--min-wear", "1.5"])
    assert result.exit_code == 2, result.output
    assert "--min-wear" in result.output


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--min-wear", "nan"], "--min-wear"),
        (["--min-wear", "-0.1"], "--min-wear"),
        (["--max-silence-hours", "-1"], "--max-silence-hours"),
        (["--max-silence-hours", "inf"], "--max-silence-hours"),
        (["--max-silence-hours", "1e308"], "--max-silence-hours"),
        (["--max-silence-hours", "nan"], "--max-silence-hours"),
        (["--min-sleep-minutes", "-5"], "--min-sleep-minutes"),
        (["--min-sleep-minutes", "100000"], "--min-sleep-minutes"),
        (["--json", "--csv"], "exclude each other"),
    ],
)
def test_adherence_thresholds_are_checked(seeded, flags, message):
    result = run_fitpipe(seeded, "adherence", "--as-of", "2024-01-02", *flags)
    assert result.returncode == 2, result.stdout
    assert message in one_error_line(result, code=2)
