"""`status` never cuts an id or a name, on a terminal or off one; `adherence` measures each
participant over their own window: one whose data ended (a retrospective Takeout import) is
measured over their last days of data and marked ended, not flagged as silent (issue 20)."""

from __future__ import annotations

import datetime as dt
import json

from rich.console import Console

from fitpipe.output.render import status_tables
from support.cli import fitpipe
from support.takeout import TakeoutBuilder

LONG_ZONE = "America/Argentina/ComodRivadavia"


def add(url: str, user: int, source: str, zone: str = "UTC", start: str = "2024-03-01") -> None:
    fitpipe(url, "participants", "add", str(user), "--source", source, "--timezone", zone, "--study-start", start)


def test_status_off_a_terminal_keeps_every_id_whole(database_url, db):
    for user in (101, 102, 103):
        add(database_url, user, "synthetic", LONG_ZONE)
    out = fitpipe(database_url, "status").stdout
    assert "…" not in out
    table = out.split("rows per metric")[0]
    rows = [line for line in table.splitlines() if LONG_ZONE in line]
    assert [line.split("│")[1].strip() for line in rows] == ["101", "102", "103"]


def test_status_on_a_narrow_terminal_folds_instead_of_cutting(database_url, db):
    from fitpipe.output.status import collect_status

    for user in (101, 102, 103):
        add(database_url, user, "synthetic", LONG_ZONE)
    report = collect_status(db, [])
    console = Console(width=60, force_terminal=True, color_system=None, record=True)
    console.print(status_tables(report)[0])
    text = console.export_text()
    assert "…" not in text
    ids = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert [i for i in ids if i] == ["101", "102", "103"]


def minute_samples(day: dt.date) -> list:
    start = dt.datetime(day.year, day.month, day.day)
    return [(start + dt.timedelta(minutes=m), 60 + m % 20, 2) for m in range(0, 24 * 60)]


def test_adherence_measures_an_ended_participant_over_their_own_window(database_url, db, tmp_path):
    add(database_url, 1, "synthetic")  # enrolled, nothing ingested: silent
    add(database_url, 2, "takeout")  # a retrospective archive ending on 2024-03-03
    b = TakeoutBuilder(2)
    for offset in range(3):
        day = dt.date(2024, 3, 1) + dt.timedelta(days=offset)
        b.heart_rate_json(day, minute_samples(day))
    fitpipe(database_url, "import", str(b.write_zip(tmp_path / "t.zip")), "--user", "2", "--workers", "1")

    def judged(as_of: str) -> dict:
        out = fitpipe(database_url, "adherence", "--as-of", as_of, "--json").stdout
        return {row["user_id"]: row for row in json.loads(out)["participants"]}

    later = judged("2024-03-20")
    ended = later[2]
    assert (ended["window_end"], ended["ended"]) == ("2024-03-03", True)
    assert ended["study_minutes"] == 3 * 24 * 60 and ended["worn_minutes"] == 3 * 24 * 60
    assert ended["wear_share"] == 1.0 and ended["hours_since_data"] == 0
    assert not ended["flag_no_recent_data"] and not ended["flag_low_wear"]
    live = later[1]
    assert (live["window_end"], live["ended"], live["flag_no_recent_data"]) == ("2024-03-20", False, True)
    assert live["study_minutes"] == 20 * 24 * 60
    # --as-of inside the archive: not ended, measured up to that day.
    early = judged("2024-03-02")[2]
    assert (early["window_end"], early["ended"], early["worn_minutes"]) == ("2024-03-02", False, 2 * 24 * 60)
    table = fitpipe(database_url, "adherence", "--as-of", "2024-03-20").stdout
    assert "data ended 2024-03-03" in table
