"""What `fitpipe import` refuses or leaves out before it loads: an archive already on record for
another participant, days far outside the archive's real span or before the study, a damaged
member in place of good rows; and where its staged data lives (issue 21, Mediums 5, 6, 9, 10)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from fitpipe.cli import app

GOOGLE_DATA = "Takeout/Fitbit/Physical Activity_GoogleData"
DAY = dt.date(2024, 3, 1)


def heart_rate_csv(day: dt.date, bpms: list[int]) -> str:
    lines = ["timestamp,beats per minute,data source"]
    lines += [f"{day}T08:00:{i:02d}Z,{bpm},Pixel Watch 2" for i, bpm in enumerate(bpms)]
    return "\n".join(lines) + "\n"


def archive(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in files.items():
            z.writestr(name, body)
    return path


def run(url: str, *args: str, code: int = 0):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def enrol(url: str, user: int, start: dt.date = DAY) -> None:
    run(url, "participants", "add", str(user), "--source", "takeout", "--timezone", "UTC", "--study-start", str(start))


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


def test_an_archive_on_record_for_another_participant_is_refused_unless_forced(database_url, db, tmp_path):
    enrol(database_url, 1)
    enrol(database_url, 2)
    path = archive(tmp_path / "takeout.zip", {f"{GOOGLE_DATA}/heart_rate_{DAY}.csv": heart_rate_csv(DAY, [60, 61])})
    run(database_url, "import", str(path), "--user", "1", "--workers", "1")

    refused = run(database_url, "import", str(path), "--user", "2", code=2)
    line = one_line(refused)
    assert "was imported for participant 1 (import " in line and "--force" in line
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM takeout_imports WHERE user_id = 2").fetchone()[0] == 0

    run(database_url, "import", str(path), "--user", "2", "--force", "--workers", "1")
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2").fetchone()[0] == 2
    # The first participant re-importing their own archive is not a mix-up.
    again = run(database_url, "import", str(path), "--user", "1")
    assert "already imported for participant 1" in again.stdout
