"""The Takeout file families fitpipe reads: which files, which columns, which clock.

Facts from ../shared/reference/real-sources.md section 3 (Google's "Time Series Data Export"
README for Physical Activity_GoogleData). A family is matched by file name, in any layout
generation's tree; each reader turns one file into frames with a `time` column (text as
written), value columns and, where the file names one, `data_source`.

Clocks:
- "utc": ISO with Z, an instant;
- "local": ISO without a zone, the participant's local wall time on that date;
- "us-local": Global Export Data's MM/DD/YY HH:MM:SS, whose zone no document settles; read as
  local wall time (the majority reading) and recorded as an assumption;
- "session": sleep logs; local wall times that keep the offset in force when the session started.
A family whose `daily` flag is set stamps a date: a midnight stamp names the date, not an instant.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import pandas as pd

from fitpipe.sources.takeout.archive import Member

# Rows read per chunk from the large per-sample CSVs, so one big file never sits in memory whole.
CSV_CHUNK_ROWS = 500_000


class FileProblem(Exception):
    """The whole file cannot be read (no data, broken JSON, unknown columns); quarantined with this reason."""


@dataclass(frozen=True)
class Family:
    id: str
    origin: str  # shown in reports and data_sources.origin
    pattern: re.Pattern
    kind: str  # what it feeds: heart_rate, spo2, ... (see KINDS)
    clock: str
    # Lower wins when two families give the same kind for the same local day: time certainty
    # first (UTC instants, then ISO local times, then the disputed US-format JSON), then detail.
    preference: int
    read: Callable[[IO[bytes], Member], Iterator[pd.DataFrame]]
    daily: bool = False
    folder: str | None = None  # the folder the file must be in, when the name alone is ambiguous
    # Records Fitbit writes for "no value" (not readings): counted in the import record, never quarantined.
    placeholder: Callable[[pd.DataFrame], pd.Series] | None = None


# kind -> which local day owns a record: "calendar" (its instant's day) or "night" (the night
# window that contains it: fitpipe's convention, the night starting on day D is D's).
KINDS = {
    "heart_rate": "calendar",
    "active_zone_minutes": "calendar",
    "steps": "calendar",
    "resting_heart_rate": "calendar",
    "spo2": "night",
    "hrv_intraday": "night",
    "hrv_daily": "night",
    "breathing_rate": "night",
    "sleep_sessions": "night",
    "sleep_stages": "night",
}
# kind -> the catalogue metric its quarantined records are filed under.
METRIC_OF = {"steps": "daily_activity", "resting_heart_rate": "heart_rate_daily"}


def _body(stream: IO[bytes]) -> bytes:
    body = stream.read()
    stripped = body.strip().lower()
    if not stripped or stripped in (b"no data", b'"no data"'):
        raise FileProblem("the file says 'no data'" if stripped else "the file is empty")
    return body


def _json(stream: IO[bytes]) -> list:
    try:
        records = json.loads(_body(stream))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileProblem(f"malformed JSON ({exc})") from None
    if not isinstance(records, list):
        raise FileProblem("malformed JSON (expected a list of records)")
    return records


def _get(record, *path):
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _csv(columns: dict[str, str], *, chunked: bool = False):
    """A reader for a CSV whose header names `columns` (file header -> frame column); `data source`
    is taken when present."""
    wanted = {name.lower(): target for name, target in columns.items()}

    def read(stream: IO[bytes], member: Member) -> Iterator[pd.DataFrame]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        first = text.readline()
        if first.strip().lower() in ("no data", '"no data"'):
            raise FileProblem("the file says 'no data'")
        if not first.strip():
            raise FileProblem("the file is empty")
        columns = next(csv.reader([first]))
        header = [c.strip().lower() for c in columns]
        missing = [name for name in wanted if name not in header]
        if missing:
            # The header is the file's own content, which may be anything: name what was expected, not what was found.
            raise FileProblem(f"header not recognised; expected the columns {sorted(wanted)}")
        keep = {
            original: wanted.get(name, "data_source")
            for original, name in zip(columns, header, strict=True)
            if name in wanted or name == "data source"
        }
        try:
            frames = pd.read_csv(
                text,
                names=columns,
                header=None,
                usecols=list(keep),
                dtype=str,
                keep_default_na=False,
                chunksize=CSV_CHUNK_ROWS if chunked else None,
            )
            for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
                yield frame.rename(columns=keep)
        except (pd.errors.ParserError, ValueError) as exc:
            # ValueError: a row with more fields than the header (found by fuzzing, test_takeout_fuzz).
            raise FileProblem(f"malformed CSV ({str(exc).strip()})") from None

    return read


def _heart_rate_json(stream, member) -> Iterator[pd.DataFrame]:
    records = _json(stream)
    yield pd.DataFrame(
        {
            "time": [_get(r, "dateTime") for r in records],
            "bpm": [_get(r, "value", "bpm") for r in records],
            "confidence": [_get(r, "value", "confidence") for r in records],
        }
    )


def _steps_json(stream, member) -> Iterator[pd.DataFrame]:
    records = _json(stream)
    # The values are strings ("12"): the number conversion downstream quarantines what is not a number.
    yield pd.DataFrame({"time": [_get(r, "dateTime") for r in records], "steps": [_get(r, "value") for r in records]})


def _resting_heart_rate_json(stream, member) -> Iterator[pd.DataFrame]:
    records = _json(stream)
    # value.date names the day; the outer dateTime is that day's midnight.
    yield pd.DataFrame(
        {
            "time": [
                (_get(r, "value", "date") + " 00:00:00")
                if isinstance(_get(r, "value", "date"), str)
                else _get(r, "dateTime")
                for r in records
            ],
            "bpm": [_get(r, "value", "value") for r in records],
            "error": [_get(r, "value", "error") for r in records],
        }
    )


def _no_resting_value(frame: pd.DataFrame) -> pd.Series:
    """Fitbit writes a day without a resting heart rate as value 0 with error 0 (and, in the JSON,
    date null): a marker, not a reading of 0 bpm. A 0 with a real error stays a bad reading."""
    value = pd.to_numeric(frame["bpm"], errors="coerce")
    error = pd.to_numeric(frame["error"], errors="coerce") if "error" in frame else pd.Series(0.0, index=frame.index)
    return (value == 0) & ((error == 0) | error.isna())


def _sleep_json(stream, member) -> Iterator[pd.DataFrame]:
    """One row per session; its stage segments travel in the `segments` column."""
    records = _json(stream)
    yield pd.DataFrame({"time": [_get(r, "startTime") for r in records], "log": records})


def _p(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


_DATE = r"\d{4}-\d{2}-\d{2}"
GOOGLE_DATA = "Physical Activity_GoogleData"
_STAGES = ("full", "deep", "light", "rem")

FAMILIES: tuple[Family, ...] = (
    # heart rate: the CSV twin with Z wins over the disputed JSON.
    Family(
        "heart-rate-csv",
        f"{GOOGLE_DATA}/heart_rate_*.csv",
        _p(rf"^heart_rate_{_DATE}\.csv$"),
        "heart_rate",
        "utc",
        0,
        _csv({"timestamp": "time", "beats per minute": "bpm"}, chunked=True),
    ),
    Family(
        "heart-rate-json",
        "Global Export Data/heart_rate-*.json",
        _p(rf"^heart_rate-{_DATE}\.json$"),
        "heart_rate",
        "us-local",
        2,
        _heart_rate_json,
    ),
    Family(
        "resting-heart-rate-csv",
        f"{GOOGLE_DATA}/daily_resting_heart_rate*.csv",
        _p(rf"^daily_resting_heart_rate(_{_DATE})?\.csv$"),
        "resting_heart_rate",
        "utc",
        0,
        _csv({"timestamp": "time", "beats per minute": "bpm"}),
        daily=True,
        placeholder=_no_resting_value,
    ),
    Family(
        "resting-heart-rate-json",
        "Global Export Data/resting_heart_rate-*.json",
        _p(rf"^resting_heart_rate-{_DATE}\.json$"),
        "resting_heart_rate",
        "us-local",
        2,
        _resting_heart_rate_json,
        daily=True,
        placeholder=_no_resting_value,
    ),
    Family(
        "steps-csv",
        f"{GOOGLE_DATA}/steps_*.csv",
        _p(rf"^steps_{_DATE}\.csv$"),
        "steps",
        "utc",
        0,
        _csv({"timestamp": "time", "steps": "steps"}, chunked=True),
    ),
    Family(
        "steps-json",
        "Global Export Data/steps-*.json",
        _p(rf"^steps-{_DATE}\.json$"),
        "steps",
        "us-local",
        2,
        _steps_json,
    ),
    Family(
        "azm-csv-googledata",
        f"{GOOGLE_DATA}/active_zone_minutes_*.csv",
        _p(rf"^active_zone_minutes_{_DATE}\.csv$"),
        "active_zone_minutes",
        "utc",
        0,
        _csv({"timestamp": "time", "heart rate zone": "zone", "total minutes": "total"}),
    ),
    Family(
        "azm-csv",
        "Active Zone Minutes (AZM)/Active Zone Minutes - *.csv",
        _p(rf"^Active Zone Minutes - {_DATE}\.csv$"),
        "active_zone_minutes",
        "local",
        1,
        _csv({"date_time": "time", "heart_zone_id": "zone", "total_minutes": "total"}),
    ),
    Family(
        "spo2-minute",
        "Oxygen Saturation (SpO2)/Minute SpO2 - *.csv",
        _p(r"^Minute SpO2 - .*\.csv$"),
        "spo2",
        "utc",
        0,
        _csv({"timestamp": "time", "value": "spo2_pct"}),
    ),
    Family(
        "hrv-details",
        "Heart Rate Variability/Heart Rate Variability Details - *.csv",
        _p(r"^Heart Rate Variability Details - .*\.csv$"),
        "hrv_intraday",
        "local",
        1,
        _csv(
            {
                "timestamp": "time",
                "rmssd": "rmssd",
                "coverage": "coverage",
                "low_frequency": "lf",
                "high_frequency": "hf",
            }
        ),
    ),
    Family(
        "hrv-daily",
        "Heart Rate Variability/Daily Heart Rate Variability Summary - *.csv",
        _p(r"^Daily Heart Rate Variability Summary - .*\.csv$"),
        "hrv_daily",
        "local",
        1,
        _csv({"timestamp": "time", "rmssd": "daily_rmssd"}),
        daily=True,
    ),
    # breathing rate: per-stage summaries before whole-night ones; milli-breaths become breaths.
    Family(
        "breathing-sleep-csv",
        f"{GOOGLE_DATA}/respiratory_rate_sleep_summary_*.csv",
        _p(rf"^respiratory_rate_sleep_summary_{_DATE}\.csv$"),
        "breathing_rate",
        "utc",
        0,
        _csv(
            {
                "timestamp": "time",
                **{f"{s} sleep stats - milli breaths per minute": f"milli_{s}_sleep" for s in _STAGES},
            }
        ),
    ),
    Family(
        "breathing-daily-csv",
        f"{GOOGLE_DATA}/daily_respiratory_rate_*.csv",
        _p(rf"^daily_respiratory_rate(_{_DATE})?\.csv$"),
        "breathing_rate",
        "utc",
        2,
        _csv({"timestamp": "time", "breaths per minute": "full_sleep"}),
        daily=True,
    ),
    Family(
        "breathing-summary",
        "Heart Rate Variability/Respiratory Rate Summary - *.csv",
        _p(r"^Respiratory Rate Summary - .*\.csv$"),
        "breathing_rate",
        "local",
        1,
        _csv({"timestamp": "time", **{f"{s}_sleep_breathing_rate": f"{s}_sleep" for s in _STAGES}}),
    ),
    Family(
        "breathing-daily-summary",
        "Heart Rate Variability/Daily Respiratory Rate Summary - *.csv",
        _p(r"^Daily Respiratory Rate Summary - .*\.csv$"),
        "breathing_rate",
        "local",
        3,
        _csv({"timestamp": "time", "daily_respiratory_rate": "full_sleep"}),
        daily=True,
    ),
    Family(
        "sleep-json",
        "Global Export Data/sleep-*.json",
        _p(rf"^sleep-{_DATE}\.json$"),
        "sleep_sessions",
        "session",
        1,
        _sleep_json,
    ),
)

# Files known and deliberately not loaded, with the reason the import report gives.
NOT_LOADED: tuple[tuple[re.Pattern, str], ...] = (
    (_p(r"^oxygen_saturation_.*\.csv$"), "same minutes as the Minute SpO2 files, which are loaded"),
    (
        _p(r"^heart_rate_variability_.*\.csv$"),
        "lacks coverage and LF/HF; the Heart Rate Variability Details files are loaded",
    ),
    (_p(r"^Daily SpO2 - .*\.csv$"), "a nightly SpO2 summary; fitpipe keeps the minutes, which are loaded"),
    (
        _p(r"^UserSleep(s|Stages)_.*\.csv$"),
        "the same sleep as sleep-*.json, which is loaded (it keeps logId and the stages)",
    ),
    (_p(r"^daily_heart_rate_zones.*\.csv$"), "invalid pseudo-JSON with 1970 dates (a known Takeout defect)"),
    (_p(r"^(UserActivityProbabilities|UserSensorCompressionToken).*"), "device-internal data, no fitpipe metric"),
)
NO_METRIC = "no fitpipe metric for it"

# A sample whose data source names Health Connect came into Fitbit from another app: not this device's.
HEALTH_CONNECT = re.compile(r"health connect\s*$", re.IGNORECASE)
# The date in a file name, when it has one: where a file-level problem is filed.
FILE_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def file_day(member: Member) -> dt.date | None:
    """The day a member's name is dated with (Fitbit names monthly and daily files by their first day)."""
    found = FILE_DATE.search(member.name)
    if not found:
        return None
    try:
        return dt.date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return None


def family_of(member: Member) -> tuple[Family | None, str | None]:
    """The family that reads the member, or None and the reason it is not loaded."""
    for family in FAMILIES:
        if family.pattern.match(member.name) and (family.folder is None or member.folder.endswith(family.folder)):
            return family, None
    for pattern, reason in NOT_LOADED:
        if pattern.match(member.name):
            return None, reason
    return None, NO_METRIC
