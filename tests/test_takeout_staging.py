"""How an import hands its archive to the loader: staged per day in a folder the import made,
read back without unpickling, and never found through a participant's stored settings."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import zipfile

import numpy as np
import psycopg

from fitpipe.sources.takeout.index import Stage, StagedBlock, StagedProblem
from support.cli import fitpipe

GOOGLE_DATA = "Takeout/Fitbit/Physical Activity_GoogleData"


class _Trap:
    """Unpickling this writes a file: proof that something unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_stage_round_trips_typed_and_object_columns_without_pickle(tmp_path):
    stage = Stage(tmp_path)
    day = dt.date(2024, 3, 1)
    block = StagedBlock(
        "heart_rate",
        (0, -3, "hr-csv"),
        "Physical Activity_GoogleData",
        "Takeout/Fitbit/x.csv",
        {
            "ts": np.array(["2024-03-01T08:00:00", "2024-03-01T08:00:05"], dtype="datetime64[us]"),
            "bpm": np.array([61.0, np.nan]),
            "data_source": np.array(["watch", None], dtype=object),
        },
    )
    problem = StagedProblem("heart_rate", "{'bpm': 'x'}", "malformed time", "heart_rate", (0, -3, "hr-csv"))
    stage.add(day, block)
    stage.add(day, problem)
    read = stage.read(day)
    assert read[1] == problem
    got = read[0]
    assert (got.kind, got.key, got.origin, got.file) == (block.kind, block.key, block.origin, block.file)
    assert list(got.columns) == ["ts", "bpm", "data_source"]
    assert got.columns["ts"].dtype == np.dtype("datetime64[us]")
    assert np.array_equal(got.columns["ts"], block.columns["ts"])
    assert np.array_equal(got.columns["bpm"], block.columns["bpm"], equal_nan=True)
    assert got.columns["data_source"].tolist() == ["watch", None]
    assert stage.read(day + dt.timedelta(days=1)) == []
    assert not list(tmp_path.glob("*.pkl"))


def test_a_stored_stage_setting_is_refused_and_never_read(database_url, db, tmp_path, cli):
    """A participant setting once told the Takeout source where to unpickle staged days from:
    database write access became code execution. Now the setting is unknown to the source's
    schema, and a value written straight into the table is never looked at."""
    trap_dir = tmp_path / "trap"
    trap_dir.mkdir()
    marker = tmp_path / "unpickled"
    day = dt.date(2024, 3, 1)
    (trap_dir / f"{day}.pkl").write_bytes(pickle.dumps(_Trap(str(marker))))

    refused = cli(
        "participants", "add", "5", "--source", "takeout", "--timezone", "UTC", "--study-start", str(day),
        "--setting", f"stage={trap_dir}",
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "unknown setting 'stage' for the takeout source" in refused.stderr

    fitpipe(database_url, "participants", "add", "5", "--source", "takeout", "--timezone", "UTC",
            "--study-start", str(day))  # fmt: skip
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE participant_sources SET settings = %s WHERE user_id = 5", (json.dumps({"stage": str(trap_dir)}),)
        )
    result = cli("backfill", "--start", str(day), "--end", str(day), "--user", "5", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    state, reason = db.execute("SELECT state, note FROM ingested_days WHERE user_id = 5").fetchone()
    assert state == "deferred"
    assert "not in any imported Takeout archive" in reason


def test_a_cumulative_daily_file_dated_at_midnight_imports(database_url, db, tmp_path, cli):
    """Issue 20, item 0: the one-file history `daily_respiratory_rate.csv` (dates at T00:00:00)
    crashed every import of a current export with "assignment destination is read-only"."""
    days = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(3)]
    body = "timestamp,breaths per minute\n" + "".join(f"{d}T00:00:00,{14 + i}.5\n" for i, d in enumerate(days))
    archive = tmp_path / "takeout.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"{GOOGLE_DATA}/daily_respiratory_rate.csv", body)
    fitpipe(database_url, "participants", "add", "6", "--source", "takeout", "--timezone", "Europe/Berlin",
            "--study-start", str(days[0]))  # fmt: skip

    dry = cli("import", str(archive), "--user", "6", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Traceback" not in dry.output

    loaded = cli("import", str(archive), "--user", "6")
    assert loaded.exit_code == 0, loaded.output
    stored = db.execute("SELECT day, full_sleep FROM breathing_rate WHERE user_id = 6 ORDER BY day").fetchall()
    # A daily breathing rate dated D is the night that ends on D's morning: stored under the
    # night's first day, D - 1, as for the per-day files of the same family.
    assert stored == [(d - dt.timedelta(days=1), 14 + i + 0.5) for i, d in enumerate(days)]
