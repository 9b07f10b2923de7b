"""One copy wins per local day, but only where the winning family has records: a UTC-dated CSV
twin that ends at UTC midnight covers part of a local day, and the disputed JSON's records for the
rest of that day are real measurements, not copies."""

from __future__ import annotations

import datetime as dt

from support.cli import fitpipe
from support.takeout import TakeoutBuilder, to_utc

UTC = dt.UTC
KOLKATA = "Asia/Kolkata"
DAY = dt.date(2024, 2, 25)


def test_the_json_fills_the_part_of_a_day_its_twin_does_not_cover(database_url, db, tmp_path):
    midnight = dt.datetime(DAY.year, DAY.month, DAY.day)
    walls = [midnight + dt.timedelta(minutes=m) for m in range(1440)]
    bpm = {w: 60 + (w.minute * 7 + w.hour) % 23 for w in walls}
    # The JSON holds the whole local day (wall times); the twin holds 00:00-05:29 local, the end of its
    # UTC file day 2024-02-24. Only the JSON carries confidences, which tells the two families apart.
    twin_end = midnight + dt.timedelta(hours=5, minutes=30)
    b = TakeoutBuilder(2)
    b.heart_rate_json(DAY, [(w, bpm[w], 2) for w in walls])
    b.heart_rate_csv(dt.date(2024, 2, 24), [(to_utc(w, KOLKATA), bpm[w], "Charge 2") for w in walls if w < twin_end])
    path = b.write_zip(tmp_path / "t.zip")
    enrol = ("participants", "add", "1", "--source", "takeout", "--timezone", KOLKATA, "--study-start", str(DAY))
    fitpipe(database_url, *enrol)
    result = fitpipe(database_url, "import", str(path), "--user", "1")
    assert result.exit_code == 0

    def utc(ts: dt.datetime) -> dt.datetime:
        return ts.astimezone(UTC).replace(tzinfo=None)

    truth = {utc(to_utc(w, KOLKATA)): bpm[w] for w in walls}
    twin = {utc(to_utc(w, KOLKATA)) for w in walls if w < twin_end}
    loaded = db.execute("SELECT ts, bpm FROM heart_rate WHERE user_id = 1").fetchall()
    assert len(loaded) == len({ts for ts, _ in loaded}) == 1440
    assert {utc(ts): value for ts, value in loaded} == truth
    from_json = {utc(ts) for (ts,) in db.execute("SELECT ts FROM heart_rate_confidence WHERE user_id = 1")}
    assert from_json == set(truth) - twin
    inside = sum(1 for t in truth if min(twin) <= t <= max(twin))
    assert inside == 330
    (dropped,) = db.execute("SELECT dropped FROM takeout_imports").fetchone()
    assert dropped == {"heart_rate: copy in another folder": inside}
