"""fitpipe import takes Fitbit's own quirks in stride (issue 20): "no value" markers are counted,
not quarantined; the same record in two files loads once and is counted as a copy; the layouts
people really have (user-site-export/, a bare folder of Global Export Data files) are read."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from support.cli import fitpipe, one_error_line
from support.takeout import TakeoutBuilder, sleep_log, to_utc

MELBOURNE = "Australia/Melbourne"


def enrol(url: str, user: int, zone: str = MELBOURNE, start: str = "2018-03-01") -> None:
    fitpipe(url, "participants", "add", str(user), "--source", "takeout", "--timezone", zone, "--study-start", start)


def resting_json(days: list[tuple[dt.date, float | None]]) -> str:
    """resting_heart_rate-*.json as Fitbit writes it: a day without a value is date null, value 0.0, error 0.0."""
    body = []
    for day, value in days:
        inner = (
            {"date": day.strftime("%m/%d/%y"), "value": value, "error": 4.2}
            if value is not None
            else {"date": None, "value": 0.0, "error": 0.0}
        )
        body.append({"dateTime": day.strftime("%m/%d/%y 00:00:00"), "value": inner})
    return json.dumps(body)


def test_no_value_markers_are_counted_not_quarantined(database_url, db, tmp_path):
    enrol(database_url, 1)
    days = [dt.date(2018, 3, 1) + dt.timedelta(days=i) for i in range(5)]
    values = [61.5, None, 60.25, None, None]
    b = TakeoutBuilder(2)
    body = resting_json(list(zip(days, values, strict=True)))
    b.put("Global Export Data", "resting_heart_rate-2018-03-01.json", body)
    path = b.write_zip(tmp_path / "t.zip")
    dry = fitpipe(database_url, "import", str(path), "--user", "1", "--dry-run")
    assert "3 no-value markers" in dry.stdout
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    loaded = db.execute("SELECT day, resting_bpm FROM heart_rate_daily ORDER BY day").fetchall()
    assert loaded == [(d, v) for d, v in zip(days, values, strict=True) if v is not None]
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    (dropped,) = db.execute("SELECT dropped FROM takeout_imports").fetchone()
    assert dropped == {"heart_rate_daily.resting_bpm: Fitbit's no-value marker": values.count(None)}


def local(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second)


def test_records_repeated_across_files_load_once_and_are_counted(database_url, db, tmp_path):
    enrol(database_url, 1, "Europe/London", "2021-01-01")
    d1, d2 = dt.date(2021, 1, 30), dt.date(2021, 1, 31)
    b = TakeoutBuilder(2)
    log = sleep_log(30001, local(d1, 23), [("light", 3600), ("deep", 1800), ("rem", 1200)])
    # The same log in two monthly files; only its 30-day averages differ.
    later = json.loads(json.dumps(log))
    log["levels"]["summary"] = {"deep": {"count": 1, "minutes": 30, "thirtyDayAvgMinutes": 55}}
    later["levels"]["summary"] = {"deep": {"count": 1, "minutes": 30, "thirtyDayAvgMinutes": 61}}
    b.sleep_json(dt.date(2021, 1, 1), [log])
    b.sleep_json(dt.date(2021, 1, 31), [later])
    # Steps files overlap by two minutes, holding the same values there.
    b.steps_json(d1, [(local(d2, 9, 0), "10"), (local(d2, 9, 1), "20"), (local(d2, 9, 2), "30")])
    b.steps_json(d2, [(local(d2, 9, 1), "20"), (local(d2, 9, 2), "30"), (local(d2, 9, 3), "40")])
    # Heart rate: one sample repeated with its value (a copy), one repeated with another value (wrong).
    b.heart_rate_json(d1, [(local(d2, 0, 0, 5), 60, 2), (local(d2, 0, 0, 10), 61, 2)])
    b.heart_rate_json(d2, [(local(d2, 0, 0, 5), 60, 2), (local(d2, 0, 0, 10), 75, 2), (local(d2, 0, 0, 15), 62, 2)])
    path = b.write_zip(tmp_path / "t.zip")
    dry = fitpipe(database_url, "import", str(path), "--user", "1", "--dry-run")
    assert "1 repeated in another file" in dry.stdout  # the sleep session
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    assert db.execute("SELECT log_id FROM sleep_sessions").fetchall() == [(30001,)]
    assert db.execute("SELECT count(*) FROM sleep_stages").fetchone()[0] == 3
    assert db.execute("SELECT day, steps FROM daily_activity").fetchall() == [(d2, 100)]
    london = "Europe/London"
    assert db.execute("SELECT ts, bpm FROM heart_rate ORDER BY ts").fetchall() == [
        (to_utc(local(d2, 0, 0, 5), london), 60),
        (to_utc(local(d2, 0, 0, 10), london), 61),  # the engine keeps the first of two differing values
        (to_utc(local(d2, 0, 0, 15), london), 62),
    ]
    quarantined = db.execute("SELECT metric, reason, raw_value FROM quarantine").fetchall()
    assert [(m, r) for m, r, _ in quarantined] == [("heart_rate", "duplicate key in the payload")]
    assert "75" in quarantined[0][2]
    (dropped,) = db.execute("SELECT dropped FROM takeout_imports").fetchone()
    assert dropped == {
        "sleep_sessions: same record in an earlier file": 1,
        "sleep_stages: same record in an earlier file": 3,
        "daily_activity.steps: same record in an earlier file": 2,
        "heart_rate: same record in an earlier file": 1,
    }


@pytest.mark.parametrize(
    "root,as_zip,layout",
    [
        ("user-site-export", True, "user-site-export"),
        ("data/user-site-export", False, "user-site-export"),
        ("", True, "global-export-folder"),
        ("", False, "global-export-folder"),
        ("my files", True, "global-export-folder"),
    ],
)
def test_layouts_as_people_have_them(database_url, db, tmp_path, root, as_zip, layout):
    enrol(database_url, 1)
    day = dt.date(2018, 3, 5)
    b = TakeoutBuilder(2)
    per_metric = layout == "user-site-export"  # user-site-export/<metric>/<file>
    heart = json.dumps(
        [{"dateTime": local(day, 9).strftime("%m/%d/%y %H:%M:%S"), "value": {"bpm": 64, "confidence": 2}}]
    )
    files = {
        ("heart_rate", f"heart_rate-{day}.json"): heart,
        ("resting_heart_rate", "resting_heart_rate-2018-03-01.json"): resting_json([(day, 58.5)]),
    }
    b.files = {
        "/".join(p for p in (root, folder if per_metric else "", name) if p): body.encode()
        for (folder, name), body in files.items()
    }
    path = b.write_zip(tmp_path / "t.zip") if as_zip else b.write_folder(tmp_path / "export")
    result = fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    assert f"layout {layout}" in result.stdout
    assert db.execute("SELECT ts, bpm FROM heart_rate").fetchall() == [(to_utc(local(day, 9), MELBOURNE), 64)]
    assert db.execute("SELECT day, resting_bpm FROM heart_rate_daily").fetchall() == [(day, 58.5)]
    assert db.execute("SELECT layout FROM takeout_imports").fetchall() == [(layout,)]


def test_a_folder_without_fitbit_files_is_still_an_unknown_layout(database_url, db, tmp_path):
    enrol(database_url, 1)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "notes-2018-03-01.txt").write_text("hello")
    result = fitpipe(database_url, "import", str(tmp_path / "export"), "--user", "1", ok=False)
    assert result.exit_code == 2
    one_error_line(result, "unknown layout", code=2)
    assert db.execute("SELECT count(*) FROM takeout_imports").fetchone()[0] == 0
