"""fitpipe import on excerpts of real Fitbit exports that their owners published (provenance in
tests/data/real_exports/README.md), each family checked against an independent reading of the
same files with the json module, not against fitpipe's parser (issue 20)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from support.cli import fitpipe

# Each test imports a real archive excerpt through the CLI.
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "real_exports"
MELBOURNE, LONDON = "Australia/Melbourne", "Europe/London"
UTC = dt.UTC


def zipped(folder: Path, root: str, target: Path) -> Path:
    """The excerpt files, byte for byte, under `root` in a zip (as their owner's export had them)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*.json")):
            archive.write(path, "/".join(p for p in (root, path.relative_to(folder).as_posix()) if p))
    return target


def us_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%m/%d/%y %H:%M:%S")


def read(path: Path) -> list:
    return json.loads(path.read_text())


def enrol(url: str, user: int, zone: str, start: str) -> None:
    fitpipe(url, "participants", "add", str(user), "--source", "takeout", "--timezone", zone, "--study-start", start)


def test_fitport_2018_melbourne_export(database_url, db, tmp_path):
    folder = DATA / "fitport-2018-melbourne"
    enrol(database_url, 1, MELBOURNE, "2018-01-01")
    path = zipped(folder, "user-site-export", tmp_path / "fitport.zip")
    listing = fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "2").stdout
    assert "layout user-site-export" in listing
    (clocks, dropped) = db.execute("SELECT clocks, dropped FROM takeout_imports").fetchone()
    # The finding on the whole export: heart rate (and steps) JSON are UTC, sleep is local.
    assert clocks["heart-rate-json"]["clock"] == "utc", clocks
    assert clocks["steps-json"]["clock"] == "utc", clocks

    # Heart rate and confidence: every record at its UTC instant.
    samples = [r for f in sorted((folder / "heart_rate").glob("*.json")) for r in read(f)]
    expected = {(us_time(r["dateTime"]).replace(tzinfo=UTC), r["value"]["bpm"]) for r in samples}
    assert set(db.execute("SELECT ts, bpm FROM heart_rate").fetchall()) == expected
    confidences = {(us_time(r["dateTime"]).replace(tzinfo=UTC), r["value"]["confidence"]) for r in samples}
    assert set(db.execute("SELECT ts, confidence FROM heart_rate_confidence").fetchall()) == confidences

    # Steps: per-minute strings summed per Melbourne day of their UTC instants.
    totals: dict[dt.date, int] = collections.Counter()
    for r in read(folder / "steps" / "steps-2018-03-02.json"):
        local = us_time(r["dateTime"]).replace(tzinfo=UTC).astimezone(ZoneInfo(MELBOURNE))
        totals[local.date()] += int(r["value"])
    assert dict(db.execute("SELECT day, steps FROM daily_activity").fetchall()) == dict(totals)

    # Resting heart rate: a value per dated record; Fitbit's no-value markers counted, not quarantined.
    resting = read(folder / "resting_heart_rate" / "resting_heart_rate-2017-05-16.json")
    values = {
        dt.datetime.strptime(r["value"]["date"], "%m/%d/%y").date(): r["value"]["value"]
        for r in resting
        if r["value"]["date"] is not None
    }
    loaded = dict(db.execute("SELECT day, resting_bpm FROM heart_rate_daily").fetchall())
    assert loaded.keys() == values.keys()
    assert all(abs(loaded[d] - v) < 1e-3 for d, v in values.items())
    markers = sum(1 for r in resting if r["value"]["date"] is None and r["value"]["value"] == 0)
    assert dropped["heart_rate_daily.resting_bpm: Fitbit's no-value marker"] == markers

    # Sleep: local wall times at the offset of the session's start; a log in two monthly files once.
    logs = {}
    for f in sorted((folder / "sleep").glob("*.json")):
        for log in read(f):
            logs.setdefault(log["logId"], log)
    tz = ZoneInfo(MELBOURNE)

    def instant(text: str, start: str) -> dt.datetime:
        offset = dt.datetime.fromisoformat(start[:19]).replace(tzinfo=tz).utcoffset()
        return (dt.datetime.fromisoformat(text[:19]) - offset).replace(tzinfo=UTC)

    sessions = {(i, instant(log["startTime"], log["startTime"])) for i, log in logs.items()}
    assert set(db.execute("SELECT log_id, start_ts FROM sleep_sessions").fetchall()) == sessions
    stages = sum(len(log["levels"].get("data", [])) + len(log["levels"].get("shortData", [])) for log in logs.values())
    assert db.execute("SELECT count(*) FROM sleep_stages").fetchone()[0] == stages
    assert dropped["sleep_sessions: same record in an earlier file"] == 1
    assert db.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_lockdown_2020_uk_heart_rate_files_as_a_bare_folder(database_url, db, tmp_path):
    folder = DATA / "lockdown-2020-uk"
    enrol(database_url, 2, LONDON, "2020-04-01")
    path = zipped(folder, "", tmp_path / "lockdown.zip")
    listing = fitpipe(database_url, "import", str(path), "--user", "2", "--workers", "1").stdout
    assert "layout global-export-folder" in listing
    (clocks,) = db.execute("SELECT clocks FROM takeout_imports").fetchone()
    # Two days without sleep logs or a DST transition: nothing settles the clock; the default is said.
    assert clocks["heart-rate-json"]["by"] == "default" and clocks["heart-rate-json"]["clock"] == "local"
    samples = [r for f in sorted(folder.glob("*.json")) for r in read(f)]
    tz = ZoneInfo(LONDON)
    expected = {(us_time(r["dateTime"]).replace(tzinfo=tz).astimezone(UTC), r["value"]["bpm"]) for r in samples}
    assert set(db.execute("SELECT ts, bpm FROM heart_rate").fetchall()) == expected


def test_status_names_the_clock_each_family_was_read_in(database_url, db, tmp_path):
    enrol(database_url, 1, MELBOURNE, "2018-01-01")
    path = zipped(DATA / "fitport-2018-melbourne", "user-site-export", tmp_path / "fitport.zip")
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    status = fitpipe(database_url, "status").stdout
    assert "clock of heart-rate-json: utc (by sleep)" in status
    assert "clock of steps-json: utc (by sleep)" in status
