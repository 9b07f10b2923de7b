"""A query's rows as pandas columns, read with binary COPY when every row has the same layout.

Why: pandas.read_sql builds a Python object for every value (a datetime per heart-rate second),
about 4 µs a row, so a month of 1-second heart rate took 10 s to become a DataFrame. Binary COPY
of a query whose columns are all fixed-width and never NULL is a run of equal-sized records,
which numpy reads in place as one structured array: no per-value Python at all.

`read_columns` returns None when that does not hold (a text column, a numeric, a NULL
anywhere); the caller then reads the query the ordinary way. Values come back as the ordinary
way gives them too (integers as int64, double precision as float64, booleans as bool, dates as
datetime.date), except that a real is float32, the value stored, where the ordinary way gives
the float64 nearest to its shortest decimal; timestamptz is tz-aware UTC (microseconds).
"""

from __future__ import annotations

import io

import numpy as np
import psycopg

from fitpipe.output.export import copy_out

# PostgreSQL type oid -> (big-endian wire type, how the column is handed over)
_FIXED = {
    16: ("u1", "bool"),
    20: (">i8", "int64"),
    21: (">i2", "int64"),
    23: (">i4", "int64"),
    700: (">f4", "float32"),
    701: (">f8", "float64"),
    1184: (">i8", "timestamptz"),
    1082: (">i4", "date"),
}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# PostgreSQL counts timestamps and dates from 2000-01-01.
_EPOCH_2000_US = np.int64(946_684_800_000_000)
_EPOCH_2000_DAYS = np.int64(10_957)


def read_columns(conn: psycopg.Connection, query: str, params: dict) -> dict[str, np.ndarray] | None:
    """The query's columns by name, or None when its rows are not all of one fixed layout."""
    read = read_raw_columns(conn, query, params)
    if read is None:
        return None
    return {name: _column(values, kind) for name, (values, kind) in read.items()}


def read_raw_columns(conn: psycopg.Connection, query: str, params) -> dict[str, tuple[np.ndarray, str]] | None:
    """The query's columns as they arrive (big-endian; timestamps and dates counted from 2000-01-01)
    with their kind, or None when its rows are not all of one fixed layout."""
    bound = psycopg.ClientCursor(conn).mogrify(query, params)
    with conn.transaction():
        described = conn.execute(f"SELECT * FROM ({bound}) q LIMIT 0").description
        if not described or any(d.type_code not in _FIXED for d in described):
            return None
        buffer = io.BytesIO()
        copy_out(conn, f"COPY ({bound}) TO STDOUT (FORMAT binary)", buffer)
    records = _records(buffer.getbuffer(), [_FIXED[d.type_code][0] for d in described])
    if records is None:
        return None
    return {d.name: (records[f"v{i}"], _FIXED[d.type_code][1]) for i, d in enumerate(described)}


def _records(data: memoryview, wire_types: list[str]) -> np.ndarray | None:
    if bytes(data[:11]) != _SIGNATURE:
        return None
    extension = int.from_bytes(data[15:19], "big")
    body = data[19 + extension : -2]  # the file trailer is an int16 -1
    fields = [("count", ">i2")]
    for i, wire in enumerate(wire_types):
        fields += [(f"n{i}", ">i4"), (f"v{i}", wire)]
    layout = np.dtype(fields)
    if len(body) % layout.itemsize:
        return None
    records = np.frombuffer(body, dtype=layout)
    # Every record must say it has every field at its full width: a NULL (-1) breaks the layout.
    if (records["count"] != len(wire_types)).any():
        return None
    for i, wire in enumerate(wire_types):
        if (records[f"n{i}"] != np.dtype(wire).itemsize).any():
            return None
    return records


def _column(values: np.ndarray, kind: str):
    if kind == "timestamptz":
        import pandas as pd

        return pd.DatetimeIndex((values.astype(np.int64) + _EPOCH_2000_US).view("datetime64[us]"), tz="UTC")
    if kind == "date":
        days = (values.astype(np.int64) + _EPOCH_2000_DAYS).astype("datetime64[D]")
        return days.astype(object)  # datetime.date, as the ordinary way gives
    if kind == "bool":
        return values.astype(bool)
    return values.astype(kind)
