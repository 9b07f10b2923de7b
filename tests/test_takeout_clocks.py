"""The clock of each Takeout file family is decided from the archive's own evidence (issue 20).

Archives are written from a known life: a participant who sleeps 23:00-07:00 local time (heart
rate low, no steps) and is active by day, minute by minute for a month around a DST transition,
with their sleep logs (local, as every real export has them). The heart-rate and steps JSON are
written in one clock or the other; the import must find which, say why, and load every sample at
its true instant."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from support.cli import fitpipe, one_error_line
from support.takeout import TakeoutBuilder, iso_z, sleep_log

UTC = dt.UTC
MELBOURNE, NEW_YORK, KOLKATA = "Australia/Melbourne", "America/New_York", "Asia/Kolkata"


def life(zone: str, first: dt.date, days: int, seed: int = 7):
    """(true UTC instant, local wall time, bpm, steps) for every minute of `days` local days."""
    tz = ZoneInfo(zone)
    rng = np.random.default_rng(seed)
    start = dt.datetime(first.year, first.month, first.day, tzinfo=tz).astimezone(UTC)
    end = (dt.datetime(first.year, first.month, first.day, tzinfo=tz) + dt.timedelta(days=days)).astimezone(UTC)
    minutes = []
    moment = start
    while moment < end:
        wall = moment.astimezone(tz).replace(tzinfo=None)
        hour = wall.hour + wall.minute / 60
        asleep = hour >= 23 or hour < 7
        bpm = (
            52 + int(rng.integers(0, 4))
            if asleep
            else int(70 + 12 * np.sin((hour - 7) / 16 * np.pi)) + int(rng.integers(0, 6))
        )
        steps = 0 if asleep else int(rng.integers(0, 40)) if rng.random() < 0.5 else 0
        minutes.append((moment, wall, bpm, steps))
        moment += dt.timedelta(minutes=1)
    return minutes


def archive_of(zone: str, first: dt.date, days: int, clock: str, *, twin: bool = False) -> TakeoutBuilder:
    """Heart-rate and steps JSON written on `clock`; sleep logs local; with `twin`, the same heart rate in CSVs
    with Z times."""
    b = TakeoutBuilder(2)
    minutes = life(zone, first, days)
    written = [(m[0].replace(tzinfo=None) if clock == "utc" else m[1], m) for m in minutes]
    by_file: dict[dt.date, list] = {}
    for naive, m in written:
        by_file.setdefault(naive.date(), []).append((naive, m))
    for day, rows in by_file.items():
        b.heart_rate_json(day, [(naive, m[2], 2) for naive, m in rows])
    for chunk in range(0, len(written), 10 * 1440):
        rows = written[chunk : chunk + 10 * 1440]
        b.steps_json(rows[0][0].date(), [(naive, str(m[3])) for naive, m in rows if m[3] or naive.minute % 7 == 0])
    if twin:
        for day, rows in by_file.items():
            b.heart_rate_csv(day, [(m[0], m[2], "Charge 2") for _, m in rows])
    logs = []
    for offset in range(-1, days):
        night = first + dt.timedelta(days=offset)
        start = dt.datetime(night.year, night.month, night.day, 23)
        logs.append(sleep_log(10_000 + offset, start, [("light", 4 * 3600), ("deep", 2 * 3600), ("rem", 2 * 3600)]))
    b.sleep_json(first, logs)
    return b


def enrol(url: str, zone: str, first: dt.date) -> None:
    fitpipe(url, "participants", "add", "1", "--source", "takeout", "--timezone", zone, "--study-start", str(first))


def true_samples(zone: str, first: dt.date, days: int) -> set:
    return {(m[0], m[2]) for m in life(zone, first, days)}


CASES = [
    # zone, first day, days, clock written, what must decide it
    pytest.param(MELBOURNE, dt.date(2018, 3, 16), 32, "utc", "dst", id="melbourne-utc"),
    pytest.param(MELBOURNE, dt.date(2018, 3, 16), 32, "local", "dst", id="melbourne-local"),
    pytest.param(NEW_YORK, dt.date(2024, 2, 24), 32, "utc", "dst", id="new-york-utc"),
    pytest.param(NEW_YORK, dt.date(2024, 2, 24), 32, "local", "dst", id="new-york-local"),
    pytest.param(KOLKATA, dt.date(2024, 2, 24), 10, "utc", "sleep", id="kolkata-utc"),
    pytest.param(KOLKATA, dt.date(2024, 2, 24), 10, "local", "sleep", id="kolkata-local"),
]


@pytest.mark.slow
@pytest.mark.parametrize("zone,first,days,clock,by", CASES)
def test_each_clock_is_found_and_every_sample_lands_at_its_instant(
    database_url, db, tmp_path, zone, first, days, clock, by
):
    enrol(database_url, zone, first)
    path = archive_of(zone, first, days, clock).write_zip(tmp_path / "t.zip")
    dry = fitpipe(database_url, "import", str(path), "--user", "1", "--dry-run").stdout
    assert f"clock of Global Export Data/heart_rate-*.json: {clock} (by {by}:" in dry
    assert f"clock of Global Export Data/steps-*.json: {clock} (by {by}:" in dry
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "2")
    loaded = set(db.execute("SELECT ts, bpm FROM heart_rate").fetchall())
    assert loaded == true_samples(zone, first, days)
    expected_steps: dict[dt.date, int] = {}
    for _, wall, _, steps in life(zone, first, days):
        expected_steps[wall.date()] = expected_steps.get(wall.date(), 0) + steps
    assert dict(db.execute("SELECT day, steps FROM daily_activity").fetchall()) == expected_steps
    (clocks,) = db.execute("SELECT clocks FROM takeout_imports").fetchone()
    assert {f: (c["clock"], c["by"]) for f, c in clocks.items()} == {
        "heart-rate-json": (clock, by),
        "steps-json": (clock, by),
    }
    assert all(c["figure"] for c in clocks.values())


@pytest.mark.slow
def test_a_utc_twin_decides_and_the_override_wins(database_url, db, tmp_path):
    first = dt.date(2024, 2, 24)
    enrol(database_url, KOLKATA, first)
    path = archive_of(KOLKATA, first, 6, "utc", twin=True).write_zip(tmp_path / "t.zip")
    dry = fitpipe(database_url, "import", str(path), "--user", "1", "--dry-run").stdout
    assert "clock of Global Export Data/heart_rate-*.json: utc (by twin:" in dry
    forced = fitpipe(database_url, "import", str(path), "--user", "1", "--dry-run", "--clock", "heart_rate=local")
    assert "clock of Global Export Data/heart_rate-*.json: local (by override: --clock)" in forced.stdout
    bad = fitpipe(database_url, "import", str(path), "--user", "1", "--clock", "heart_rate=gmt", ok=False)
    one_error_line(bad, "--clock heart_rate=gmt", code=2)
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "2")
    assert set(db.execute("SELECT ts, bpm FROM heart_rate").fetchall()) == true_samples(KOLKATA, first, 6)


def test_an_archive_without_evidence_keeps_the_default_and_says_so(database_url, db, tmp_path):
    first = dt.date(2024, 1, 10)
    enrol(database_url, "UTC", first)  # a zone at offset 0 and no DST: nothing can tell the clocks apart
    b = TakeoutBuilder(2)
    b.heart_rate_json(first, [(dt.datetime(2024, 1, 10, 8), 61, 2), (dt.datetime(2024, 1, 10, 9), 63, 2)])
    path = b.write_zip(tmp_path / "t.zip")
    fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    (clocks, assumptions) = db.execute("SELECT clocks, assumptions FROM takeout_imports").fetchone()
    assert clocks["heart-rate-json"]["clock"] == "local" and clocks["heart-rate-json"]["by"] == "default"
    assert any("not settling their clock" in a for a in assumptions)
    assert json.dumps(clocks)  # stored as JSON
    assert iso_z  # the writer's helpers are shared with the other Takeout tests
