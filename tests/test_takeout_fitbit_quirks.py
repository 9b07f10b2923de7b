"""fitpipe import takes Fitbit's own quirks in stride (issue 20): "no value" markers are counted,
not quarantined; the same record in two files loads once and is counted as a copy; the layouts
people really have (user-site-export/, a bare folder of Global Export Data files) are read."""

from __future__ import annotations

import datetime as dt
import json

from conftest import fitpipe
from test_takeout_archives import TakeoutBuilder

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
