"""Hostile or mistaken Takeout archives: links out of the folder, unrecognised content, bombs,
encrypted, unreadable or doubled members, absurd nesting, an archive already on record for
another participant. Each ends in loaded rows, a named skipped file or one clear line, never in
file content copied into a table or a message (issue 21)."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.sources.takeout import archive as archive_module

GOOGLE_DATA = "Takeout/Fitbit/Physical Activity_GoogleData"
SECRET = "FITPIPE_SECRET_KEY=do-not-leak-7f3a,postgresql://fitpipe:hunter2@db/fitpipe"
DAY = dt.date(2024, 3, 1)


def heart_rate_csv(day: dt.date, bpms: list[int]) -> str:
    lines = ["timestamp,beats per minute,data source"]
    lines += [f"{day}T08:00:{i:02d}Z,{bpm},Pixel Watch 2" for i, bpm in enumerate(bpms)]
    return "\n".join(lines) + "\n"


def run(url: str, *args: str):
    return CliRunner().invoke(app, ["--database-url", url, *args])


def enrol(url: str) -> None:
    result = run(url, "participants", "add", "1", "--source", "takeout", "--timezone", "UTC", "--study-start", str(DAY))
    assert result.exit_code == 0, result.output


def refused_in_one_line(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def nothing_loaded(db) -> None:
    for table in ("heart_rate", "ingested_days", "quarantine", "takeout_imports"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def every_text_column(db) -> str:
    """Everything an import could have written where a dashboard login can read it."""
    texts = []
    for table in ("quarantine", "takeout_imports", "ingest_runs", "participant_sources"):
        texts += [str(row) for row in db.execute(f"SELECT * FROM {table}").fetchall()]
    return "\n".join(texts)


def test_a_folder_import_never_follows_links_nor_repeats_an_unrecognised_header(database_url, db, tmp_path):
    enrol(database_url)
    secret = tmp_path / "environ"
    secret.write_text(SECRET + "\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"heart_rate_{DAY + dt.timedelta(days=1)}.csv").write_text(heart_rate_csv(DAY, [99]))
    folder = tmp_path / "export" / GOOGLE_DATA
    folder.mkdir(parents=True)
    (folder / f"heart_rate_{DAY}.csv").write_text(heart_rate_csv(DAY, [61, 62]))
    # Links as `unzip` restores them: to a file outside the archive and to a folder outside it.
    os.symlink(secret, folder / f"steps_{DAY}.csv")
    os.symlink(outside, folder / "linked")
    # A regular member whose first line is not a header fitpipe knows.
    (folder / f"steps_{DAY + dt.timedelta(days=1)}.csv").write_text(SECRET.lower() + "\n1,2\n")

    result = run(database_url, "import", str(tmp_path / "export"), "--user", "1", "--workers", "1")

    assert result.exit_code == 0, (result.stdout, result.stderr)
    stored = every_text_column(db)
    for leaked in ("do-not-leak", "hunter2"):
        assert leaked not in result.stdout + result.stderr
        assert leaked not in stored
    assert db.execute("SELECT bpm FROM heart_rate ORDER BY ts").fetchall() == [(61,), (62,)]
    skipped = db.execute("SELECT files_skipped FROM takeout_imports").fetchone()[0]
    assert {"file": f"{GOOGLE_DATA}/steps_{DAY}.csv", "reason": "a symbolic link: not followed"} in skipped
    assert {"file": f"{GOOGLE_DATA}/linked", "reason": "a symbolic link: not followed"} in skipped
    unrecognised = [s for s in skipped if s["file"] == f"{GOOGLE_DATA}/steps_{DAY + dt.timedelta(days=1)}.csv"]
    assert unrecognised and unrecognised[0]["reason"].startswith("header not recognised; expected the columns")
    reasons = [r for (r,) in db.execute("SELECT reason FROM quarantine").fetchall()]
    assert reasons == [f"steps_{DAY + dt.timedelta(days=1)}.csv: " + unrecognised[0]["reason"]]


def test_a_folder_nested_far_deeper_than_the_recursion_limit_imports(database_url, db):
    enrol(database_url)
    # Outside pytest's tmp_path: its clean-up (shutil.rmtree) recurses and would fail on this tree.
    root = Path(tempfile.mkdtemp(prefix="fitpipe-deep-"))
    try:
        folder = root / GOOGLE_DATA
        folder.mkdir(parents=True)
        (folder / f"heart_rate_{DAY}.csv").write_text(heart_rate_csv(DAY, [70]))
        deep = root
        for _ in range(1200):  # one level at a time: pathlib's own mkdir(parents=True) recurses
            deep = deep / "d"
            deep.mkdir()
        (deep / "note.txt").write_text("x")

        result = run(database_url, "import", str(root), "--user", "1", "--workers", "1")
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)  # rm walks deep trees without recursing

    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert db.execute("SELECT bpm FROM heart_rate").fetchall() == [(70,)]


def _zip(path: Path, entries: list[tuple[str, bytes]], **options) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in entries:
            archive.writestr(name, body, **options)
    return path


def test_a_json_member_that_expands_past_its_cap_refuses_the_archive(database_url, db, tmp_path):
    enrol(database_url)
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"Takeout/Fitbit/Global Export Data/heart_rate-{DAY}.json", "w") as member,
    ):
        member.write(b"[" + b" " * (archive_module.MAX_JSON_MEMBER_BYTES + 1) + b"]")
    assert bomb.stat().st_size < 1 << 20

    line = refused_in_one_line(run(database_url, "import", str(bomb), "--user", "1"), "heart_rate-2024-03-01.json")
    assert f"over the {archive_module.MAX_JSON_MEMBER_BYTES >> 20} MB one JSON member may hold" in line
    nothing_loaded(db)


def test_any_member_over_the_member_cap_refuses_the_archive_zip_or_folder(database_url, db, tmp_path, monkeypatch):
    enrol(database_url)
    monkeypatch.setattr(archive_module, "MAX_MEMBER_BYTES", 1000)
    body = heart_rate_csv(DAY, [60] * 40).encode()
    assert len(body) > 1000
    zipped = _zip(tmp_path / "big.zip", [(f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", body)])
    folder = tmp_path / "export" / GOOGLE_DATA
    folder.mkdir(parents=True)
    (folder / f"heart_rate_{DAY}.csv").write_bytes(body)
    for path in (zipped, tmp_path / "export"):
        refused_in_one_line(run(database_url, "import", str(path), "--user", "1"), "over the 0 MB one member may hold")
    nothing_loaded(db)


def test_two_entries_with_one_name_refuse_the_archive(database_url, db, tmp_path):
    enrol(database_url)
    name = f"{GOOGLE_DATA}/heart_rate_{DAY}.csv"
    with pytest.warns(UserWarning, match="Duplicate name"):
        doubled = _zip(tmp_path / "doubled.zip", [(name, heart_rate_csv(DAY, [60])), (name, heart_rate_csv(DAY, [90]))])
    refused_in_one_line(run(database_url, "import", str(doubled), "--user", "1"), f"two entries named {name}")
    nothing_loaded(db)


def _patch_headers(path: Path, local_offset: int, value: int) -> None:
    """Rewrite a 2-byte field of every entry's local header (at local_offset) and central header (2 bytes later)."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", local_offset + 2)):
        at = data.find(signature)
        while at != -1:
            data[at + offset : at + offset + 2] = struct.pack("<H", value)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def test_encrypted_or_unreadably_compressed_members_get_one_line(database_url, db, tmp_path):
    enrol(database_url)
    name = f"{GOOGLE_DATA}/heart_rate_{DAY}.csv"
    encrypted = _zip(tmp_path / "encrypted.zip", [(name, heart_rate_csv(DAY, [60]))], compress_type=zipfile.ZIP_STORED)
    _patch_headers(encrypted, 6, 0x1)  # general purpose flag bit 0: encrypted
    deflate64 = _zip(tmp_path / "deflate64.zip", [(name, heart_rate_csv(DAY, [60]))], compress_type=zipfile.ZIP_STORED)
    _patch_headers(deflate64, 8, 9)  # compression method 9: Deflate64, which zipfile cannot read

    refused_in_one_line(run(database_url, "import", str(encrypted), "--user", "1"), f"{name} is encrypted")
    unreadable = run(database_url, "import", str(deflate64), "--user", "1")
    refused_in_one_line(unreadable, "compression method fitpipe cannot read (zip method 9)")
    nothing_loaded(db)


def test_profile_timezone_cell_is_repeated_only_when_it_names_a_zone(database_url, db, tmp_path):
    enrol(database_url)
    profile = "Takeout/Fitbit/Profile/Profile.csv"
    good = _zip(
        tmp_path / "named.zip",
        [(f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart_rate_csv(DAY, [60])), (profile, "timezone\nAsia/Tokyo\n")],
    )
    hostile = _zip(
        tmp_path / "hostile.zip",
        [(f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart_rate_csv(DAY, [61])), (profile, f'timezone\n"{SECRET}"\n')],
    )
    named = run(database_url, "import", str(good), "--user", "1", "--dry-run")
    assert named.exit_code == 0 and "Profile.csv names the time zone Asia/Tokyo" in named.stdout
    result = run(database_url, "import", str(hostile), "--user", "1", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert "Profile.csv names" not in result.stdout
    assert "do-not-leak" not in result.stdout + every_text_column(db)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT bpm FROM heart_rate").fetchall() == [(61,)]


# --- what an import refuses before loading -------------------------------------------------


def enrol_user(url: str, user: int) -> None:
    result = run(url, "participants", "add", str(user), "--source", "takeout", "--timezone", "UTC",
                 "--study-start", str(DAY))  # fmt: skip
    assert result.exit_code == 0, result.output


def imported(url: str, *args: str) -> str:
    result = run(url, "import", *args, "--workers", "1")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_an_archive_on_record_for_another_participant_is_refused_unless_forced(database_url, db, tmp_path):
    enrol_user(database_url, 1)
    enrol_user(database_url, 2)
    path = _zip(tmp_path / "takeout.zip", [(f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart_rate_csv(DAY, [60, 61]))])
    imported(database_url, str(path), "--user", "1")

    line = refused_in_one_line(run(database_url, "import", str(path), "--user", "2"), "--force")
    assert "was imported for participant 1 (import " in line
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM takeout_imports WHERE user_id = 2").fetchone()[0] == 0

    imported(database_url, str(path), "--user", "2", "--force")
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2").fetchone()[0] == 2
    # The first participant importing their own archive again is not a mix-up.
    assert "already imported for participant 1" in imported(database_url, str(path), "--user", "1")


def test_stray_days_and_days_before_the_study_are_listed_and_left_out_unless_asked_for(database_url, db, tmp_path):
    enrol_user(database_url, 1)
    before = DAY - dt.timedelta(days=9)
    stray = dt.date(1900, 1, 1)
    path = _zip(
        tmp_path / "takeout.zip",
        [
            (f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart_rate_csv(DAY, [60, 61])),
            (
                f"{GOOGLE_DATA}/heart_rate_{DAY + dt.timedelta(days=1)}.csv",
                heart_rate_csv(DAY + dt.timedelta(days=1), [62]),
            ),
            (f"{GOOGLE_DATA}/heart_rate_{before}.csv", heart_rate_csv(before, [63])),
            (f"{GOOGLE_DATA}/heart_rate_{stray}.csv", heart_rate_csv(stray, [64])),
        ],
    )
    listing = imported(database_url, str(path), "--user", "1")
    assert "left out 1 day(s) with records far outside the archive's span: 1900-01-01 .. 1900-01-01" in listing
    assert f"left out 1 day(s) with records before the participant's study start: {before} .. {before}" in listing
    days = [d for (d,) in db.execute("SELECT day FROM ingested_days ORDER BY day").fetchall()]
    assert days == [DAY, DAY + dt.timedelta(days=1)]
    assert db.execute("SELECT bpm FROM heart_rate ORDER BY ts").fetchall() == [(60,), (61,), (62,)]

    imported(database_url, str(path), "--user", "1", "--all-days", "--force")
    days = [d for (d,) in db.execute("SELECT day FROM ingested_days ORDER BY day").fetchall()]
    # Each span with its empty days, never the 124 years between them.
    assert days == [stray] + [before + dt.timedelta(days=i) for i in range(11)]
    assert db.execute("SELECT bpm FROM heart_rate ORDER BY ts").fetchall() == [(64,), (63,), (60,), (61,), (62,)]


def ledger_of(db, day: dt.date) -> tuple:
    return db.execute(
        "SELECT state, rows_by_metric, content_hash, run_id FROM ingested_days WHERE day = %s", (day,)
    ).fetchone()


def test_a_damaged_file_in_a_newer_archive_never_empties_a_day_that_has_rows(database_url, db, tmp_path):
    enrol_user(database_url, 1)
    next_day = DAY + dt.timedelta(days=1)
    first = _zip(tmp_path / "first.zip", [(f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart_rate_csv(DAY, [60, 61, 62]))])
    imported(database_url, str(first), "--user", "1")
    day_before = ledger_of(db, DAY)
    assert day_before[1] == {"heart_rate": 3, "data_sources": 1}
    newer = _zip(
        tmp_path / "newer.zip",
        [
            (f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", '"timestamp,beats per minute\n2024-03-01T08:00:00Z,"6'),
            (f"{GOOGLE_DATA}/heart_rate_{next_day}.csv", heart_rate_csv(next_day, [70])),
        ],
    )

    listing = imported(database_url, str(newer), "--user", "1")

    assert f"day {DAY} left as it was: it keeps its 3 heart_rate row(s): heart_rate_{DAY}.csv: " in listing
    assert db.execute("SELECT bpm FROM heart_rate ORDER BY ts").fetchall() == [(60,), (61,), (62,), (70,)]
    assert ledger_of(db, DAY) == day_before, "the kept day's ledger row changed"
    assert db.execute("SELECT state FROM ingested_days WHERE day = %s", (next_day,)).fetchone() == ("complete",)


def test_an_impossible_minute_of_steps_is_quarantined_and_the_days_total_kept(database_url, db, tmp_path):
    enrol_user(database_url, 1)
    minutes = ["12", "-5", "30", "99999999", "abc", "2.5"]
    body = "timestamp,steps,data source\n" + "".join(
        f"{DAY}T08:{i:02d}:00Z,{value},Pixel Watch 2\n" for i, value in enumerate(minutes)
    )
    path = _zip(tmp_path / "steps.zip", [(f"{GOOGLE_DATA}/steps_{DAY}.csv", body)])
    imported(database_url, str(path), "--user", "1")
    assert db.execute("SELECT day, steps FROM daily_activity").fetchall() == [(DAY, 42)]
    reasons = sorted(r for (r,) in db.execute("SELECT reason FROM quarantine WHERE metric = 'daily_activity'"))
    assert reasons == ["steps in one minute must be a whole number from 0 to 1000"] * 3 + ["steps is not a number"]


def test_records_dated_year_1_or_9999_are_quarantined_not_a_traceback(database_url, db, tmp_path):
    enrol_user(database_url, 1)
    heart = "timestamp,beats per minute\n2024-03-01T08:00:00Z,60\n0001-01-01T00:00:00Z,61\n9999-12-31T23:59:59Z,62\n"
    hrv = (
        "timestamp,rmssd,coverage,low_frequency,high_frequency\n"
        "9999-12-31T23:30:00,40.5,0.9,500.0,300.0\n0001-01-01T00:30:00,41.5,0.9,500.0,300.0\n"
    )
    sleep = (
        '[{"logId": 1, "dateOfSleep": "9999-12-31", "startTime": "9999-12-31T23:00:00.000", '
        '"endTime": "9999-12-31T23:59:00.000", "duration": 3540000, "mainSleep": true, "levels": {}}]'
    )
    path = _zip(
        tmp_path / "years.zip",
        [
            (f"{GOOGLE_DATA}/heart_rate_{DAY}.csv", heart),
            (f"Takeout/Fitbit/Heart Rate Variability/Heart Rate Variability Details - {DAY}.csv", hrv),
            (f"Takeout/Fitbit/Global Export Data/sleep-{DAY}.json", sleep),
        ],
    )
    result = run(database_url, "import", str(path), "--user", "1", "--workers", "1")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert db.execute("SELECT bpm FROM heart_rate").fetchall() == [(60,)]
    reasons = db.execute("SELECT metric, reason FROM quarantine ORDER BY metric, reason").fetchall()
    assert reasons[:4] == [("heart_rate", "malformed time")] * 2 + [("hrv_intraday", "malformed time")] * 2
    assert len(reasons) == 5 and reasons[4][0] == "sleep_sessions" and "out of range" in reasons[4][1]
