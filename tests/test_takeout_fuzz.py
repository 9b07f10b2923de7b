"""Hypothesis against the Takeout archive reader and its file readers: whatever bytes a member
holds (malformed CSV and JSON, odd encodings, extreme numbers and dates) and whatever a zip is,
reading ends in records, a skipped file with its reason, or one BadInput, never another
exception (issue 21). No database: this is the reading half of `fitpipe import`."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fitpipe.errors import BadInput
from fitpipe.participants import User
from fitpipe.sources.takeout.archive import Archive
from fitpipe.sources.takeout.index import Indexer, Stage

NY = "America/New_York"
PARTICIPANT = User(1, "p1", NY, "takeout", dt.date(2024, 3, 1), zones=((dt.date(2024, 3, 1), NY),))
MEMBERS = (
    "Takeout/Fitbit/Physical Activity_GoogleData/heart_rate_2024-03-01.csv",
    "Takeout/Fitbit/Physical Activity_GoogleData/steps_2024-03-01.csv",
    "Takeout/Fitbit/Global Export Data/heart_rate-2024-03-01.json",
    "Takeout/Fitbit/Global Export Data/sleep-2024-03-01.json",
    "Takeout/Fitbit/Heart Rate Variability/Heart Rate Variability Details - 2024-03-01.csv",
    "Takeout/Fitbit/Active Zone Minutes (AZM)/Active Zone Minutes - 2024-03-01.csv",
    "Takeout/Fitbit/Profile/Profile.csv",
)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like the real thing in places: headers, times of every shape, numbers of every size.
times = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S")
    ),
    st.datetimes().map(lambda t: t.isoformat() + "Z"),
    st.datetimes().map(lambda t: t.strftime("%m/%d/%y %H:%M:%S")),
    st.text(max_size=12),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=6),
)
csv_rows = st.lists(st.tuples(times, numbers, numbers), max_size=20).map(
    lambda rows: (
        "timestamp,beats per minute,steps,rmssd,coverage,low_frequency,high_frequency,date_time,"
        "heart_zone_id,total_minutes,timezone\n"
        + "".join(f"{t},{a},{b},{a},{b},{a},{b},{t},{a},{b},{a}\n" for t, a, b in rows)
    )
)
json_records = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), times),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "dateTime",
                    "value",
                    "bpm",
                    "confidence",
                    "startTime",
                    "endTime",
                    "logId",
                    "dateOfSleep",
                    "duration",
                    "levels",
                    "data",
                    "level",
                    "seconds",
                    "mainSleep",
                ]
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=20,
).map(lambda value: __import__("json").dumps(value, allow_nan=True))
bodies = st.one_of(
    st.binary(max_size=400),
    csv_rows,
    json_records,
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
)


def read(path) -> None:
    """What `fitpipe import --dry-run` does before it touches the database."""
    try:
        archive = Archive(path)
    except BadInput:
        return
    try:
        Indexer(archive, PARTICIPANT, Stage(None)).run()
    except BadInput:
        pass
    finally:
        archive.close()


@FUZZ
@example(contents=[(MEMBERS[0], "timestamp,beats per minute\n,,0.0,0.0\n")])  # more fields than the header
@given(contents=st.lists(st.tuples(st.sampled_from(MEMBERS), bodies), min_size=1, max_size=5, unique_by=lambda c: c[0]))
def test_any_member_content_ends_in_records_a_skipped_file_or_bad_input(tmp_path_factory, contents):
    path = tmp_path_factory.mktemp("fuzz") / "takeout.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in contents:
            z.writestr(name, body if isinstance(body, bytes) else body.encode())
    read(path)


@FUZZ
@example(damage=[(2002, b"\x00@")])  # "zip file version 6.4": NotImplementedError
@example(damage=[(8_854_777_872_636, b"\x01")])  # a header offset past the file: OSError on seek
@given(damage=st.lists(st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=8)), max_size=6))
def test_a_damaged_zip_ends_in_records_or_bad_input(tmp_path_factory, damage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MEMBERS[0], "timestamp,beats per minute\n2024-03-01T08:00:00Z,60\n" * 20)
        z.writestr(MEMBERS[2], '[{"dateTime": "03/01/24 08:00:00", "value": {"bpm": 61, "confidence": 2}}]')
    data = bytearray(buffer.getvalue())
    for offset, patch in damage:
        at = offset % len(data)
        data[at : at + len(patch)] = patch
    path = tmp_path_factory.mktemp("damaged") / "takeout.zip"
    path.write_bytes(bytes(data))
    read(path)


@pytest.mark.parametrize("body", [b"\xff\xfe\x00", b'[{"dateTime": "99/99/99 99:99:99"}]', b"[1e999]"])
def test_known_awkward_bodies(tmp_path, body):
    path = tmp_path / "takeout.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MEMBERS[2], body)
    read(path)
