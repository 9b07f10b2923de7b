"""Rows of chosen participant-days from the database into Arrow, and Arrow into Parquet files.

The database side is one CSV COPY per batch of days, parsed by pyarrow's multithreaded CSV
reader with the lake's types given up front: no Python object per value. Each row comes with
the local day that owns it (`ledger_day`), joined from the day windows the loader itself uses.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

import psycopg

from fitpipe.catalogue import DayWindow
from fitpipe.days import ONE_DAY, DayContext
from fitpipe.lake.layout import ROWS_PER_ROW_GROUP, TEMP_PREFIX, Dataset, Field, file_name, partition_dir
from fitpipe.participants import User

_ARROW = {
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "real": "float32",
    "double precision": "float64",
    "boolean": "bool_",
    "date": "date32",
}


def arrow_type(f: Field):
    import pyarrow as pa

    if f.pg_type == "timestamptz":
        return pa.timestamp("us", tz="UTC")
    if f.pg_type == "text":
        return pa.dictionary(pa.int32(), pa.string()) if f.enum else pa.string()
    return getattr(pa, _ARROW[f.pg_type])()


def schema(dataset: Dataset):
    import pyarrow as pa

    return pa.schema(
        [pa.field("ledger_day", pa.date32(), nullable=False)]
        + [pa.field(f.name, arrow_type(f), nullable=f.nullable) for f in dataset.fields]
    )


def _csv_type(f: Field):
    """How the CSV reader parses a column before it gets its lake type."""
    import pyarrow as pa

    if f.pg_type == "timestamptz":
        return pa.timestamp("us")  # selected as UTC wall time
    if f.pg_type == "text":
        return pa.string()
    return arrow_type(f)


def _select_list(dataset: Dataset) -> str:
    parts = ["w.day AS ledger_day"]
    for f, expression in zip(dataset.fields, dataset.select, strict=True):
        parts.append(f"{expression} AT TIME ZONE 'UTC' AS {f.name}" if f.pg_type == "timestamptz" else expression)
    return ", ".join(parts)


def windows(
    dataset: Dataset, user: User, days: Iterable[dt.date]
) -> list[tuple[int, dt.date, dt.datetime, dt.datetime]]:
    """(user, day, lo, hi) of the instants each day owns in this dataset."""
    out = []
    for day in days:
        context = DayContext(user.user_id, day, user.zone_on(day), user.zone_on(day + ONE_DAY))
        if dataset.window is DayWindow.DATE:
            out.append(
                (user.user_id, day, dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.min.replace(tzinfo=dt.UTC))
            )
        else:
            lo, hi = context.bounds(dataset.window)
            out.append((user.user_id, day, lo, hi))
    return out


def fetch(conn: psycopg.Connection, dataset: Dataset, day_windows: Sequence[tuple]):
    """The dataset's rows of these (user, day, lo, hi) windows as an Arrow table (lake schema)."""
    import pyarrow as pa

    target = schema(dataset)
    if not day_windows:
        return target.empty_table()
    if dataset.window is DayWindow.DATE:
        on = "t.user_id = w.user_id AND t.day = w.day"
    else:
        on = f"t.user_id = w.user_id AND t.{dataset.time_column} >= w.lo AND t.{dataset.time_column} < w.hi"
    query = (
        f"SELECT {_select_list(dataset)} FROM unnest(%s::int[], %s::date[], %s::timestamptz[], %s::timestamptz[]) "
        f"AS w(user_id, day, lo, hi) JOIN {dataset.name} t ON {on}"
    )
    # Constant bounds as well, so that only the chunks of these days are scanned.
    users = sorted({w[0] for w in day_windows})
    if dataset.window is DayWindow.DATE:
        query += " WHERE t.user_id = ANY(%s) AND t.day BETWEEN %s AND %s"
        bounds = [users, min(w[1] for w in day_windows), max(w[1] for w in day_windows)]
    else:
        query += f" WHERE t.user_id = ANY(%s) AND t.{dataset.time_column} >= %s AND t.{dataset.time_column} < %s"
        bounds = [users, min(w[2] for w in day_windows), max(w[3] for w in day_windows)]
    params = (*(list(column) for column in zip(*day_windows, strict=True)), *bounds)
    if _fixed_width(dataset) and dataset.window is not DayWindow.DATE:
        binary = _windowed_binary(conn, dataset, day_windows, bounds, target)
        if binary is not None:
            return binary
    bound = psycopg.ClientCursor(conn).mogrify(query, params)
    fields = [Field("ledger_day", "date"), *dataset.fields]
    parsed = pa.schema([pa.field(f.name, _csv_type(f)) for f in fields])
    return conform(copy_csv(conn, bound, parsed), target)


def copy_csv(conn: psycopg.Connection, query: str, columns):
    """The rows of a bound query as an Arrow table of the given schema, through one CSV COPY
    parsed by pyarrow (no Python object per value)."""
    import pyarrow.csv as pacsv

    from fitpipe.output.export import copy_out

    buffer = io.BytesIO()
    copy_out(conn, f"COPY ({query}) TO STDOUT (FORMAT csv)", buffer)
    if buffer.tell() == 0:
        return columns.empty_table()
    buffer.seek(0)
    return pacsv.read_csv(
        buffer,
        read_options=pacsv.ReadOptions(column_names=columns.names),
        convert_options=pacsv.ConvertOptions(
            column_types={f.name: f.type for f in columns},
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    ).cast(columns)


_EPOCH_2000_US = 946_684_800_000_000
_EPOCH_2000_DAYS = 10_957


def _fixed_width(dataset: Dataset) -> bool:
    return not any(f.pg_type == "text" or f.nullable for f in dataset.fields)


def _windowed_binary(conn: psycopg.Connection, dataset: Dataset, day_windows: Sequence[tuple], bounds, target):
    """The big tables (1 Hz, 1 minute): their rows in the windows' span through binary COPY into
    numpy, each given its day by a search among the windows (far cheaper for the server than a
    join per window); rows of days not asked for are left out. None when a row is not of one
    fixed layout."""
    import numpy as np
    import pyarrow as pa

    from fitpipe.output.frames import read_raw_columns

    time_column = dataset.time_column
    read = read_raw_columns(
        conn,
        f"SELECT {', '.join(f.name for f in dataset.fields)} FROM {dataset.name} "
        f"WHERE user_id = ANY(%s) AND {time_column} >= %s AND {time_column} < %s",
        bounds,
    )
    if read is None:
        return None
    users = read["user_id"][0].astype(np.int64)
    instants = read[time_column][0].astype(np.int64) + _EPOCH_2000_US
    day_of = np.full(len(users), -1, np.int64)
    for user_id in np.unique(users):
        mine = [w for w in day_windows if w[0] == user_id]
        mine.sort(key=lambda w: w[2])
        lo = np.array([_micros(w[2]) for w in mine], np.int64)
        hi = np.array([_micros(w[3]) for w in mine], np.int64)
        days = np.array([(w[1] - dt.date(1970, 1, 1)).days for w in mine], np.int64)
        rows = np.flatnonzero(users == user_id)
        index = np.searchsorted(lo, instants[rows], side="right") - 1
        inside = (index >= 0) & (instants[rows] < hi[np.maximum(index, 0)])
        day_of[rows[inside]] = days[index[inside]]
    keep = day_of >= 0
    arrays = [pa.array(day_of[keep].astype(np.int32), pa.int32()).cast(pa.date32())]
    for field in target:
        if field.name == "ledger_day":
            continue
        values, kind = read[field.name]
        if kind == "timestamptz":
            native = (values.astype(np.int64) + _EPOCH_2000_US)[keep]
            arrays.append(pa.array(native.view("datetime64[us]"), pa.timestamp("us")).cast(field.type))
        elif kind == "date":
            native_days = (values.astype(np.int64) + _EPOCH_2000_DAYS).astype(np.int32)[keep]
            arrays.append(pa.array(native_days, pa.int32()).cast(pa.date32()))
        else:
            arrays.append(pa.array(values.astype(values.dtype.newbyteorder("="))[keep]).cast(field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def _micros(instant: dt.datetime) -> int:
    return (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def conform(table, target):
    """A table cast to the lake schema (UTC instants, dictionary-encoded enums)."""
    import pyarrow as pa

    columns = []
    for field in target:
        column = table.column(field.name)
        if pa.types.is_dictionary(field.type) and not pa.types.is_dictionary(column.type):
            column = column.cast(pa.string()).dictionary_encode()
            column = column.cast(field.type)
        elif column.type != field.type:
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


class PartFile:
    """One new Parquet file of a partition, written under a hidden temporary name and given its
    final name only by `finish`. Rows arrive in order; they are buffered into row groups."""

    def __init__(self, root: Path, dataset: Dataset, month: str, first_user: int, last_user: int):
        import pyarrow.parquet as pq

        self.dataset, self.root = dataset, root
        directory = partition_dir(root, dataset.name, month)
        directory.mkdir(parents=True, exist_ok=True)
        self.final = directory / file_name(first_user, last_user, secrets.token_hex(6))
        self.temp = directory / f"{TEMP_PREFIX}{self.final.name}"
        self.schema = schema(dataset)
        # Instants on a regular grid delta-encode to almost nothing, and float bytes split into
        # streams compress far better (a participant-month of 1 Hz heart rate: 6.3 MB with
        # dictionary/plain encodings, 0.59 MB with these; with PLAIN floats the lake outgrew the
        # compressed hypertables, 1.05x on the 10 x 365 benchmark store). Spark before 4.3 reads
        # byte-stream-split only with its vectorized reader off (docs/lake.md).
        encodings = {
            f.name: "DELTA_BINARY_PACKED" if f.pg_type == "timestamptz" else "BYTE_STREAM_SPLIT"
            for f in dataset.fields
            if f.pg_type in ("timestamptz", "real", "double precision")
        }
        self.writer = pq.ParquetWriter(
            self.temp,
            self.schema,
            compression="zstd",
            use_dictionary=[name for name in self.schema.names if name not in encodings],
            column_encoding=encodings,
            write_statistics=True,
        )
        self.pending: list = []
        self.pending_rows = 0
        self.rows = 0

    def add(self, table) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= ROWS_PER_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            return
        table = pa.concat_tables(self.pending).combine_chunks()
        self.writer.write_table(table, row_group_size=ROWS_PER_ROW_GROUP)
        self.rows += table.num_rows
        self.pending, self.pending_rows = [], 0

    def finish(self) -> tuple[Path, int] | None:
        """Close the file; give it its final name (None, and no file, when it holds no rows)."""
        self._flush()
        self.writer.close()
        if self.rows == 0:
            self.temp.unlink()
            return None
        with open(self.temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temp, self.final)
        return self.final, self.rows

    def abandon(self) -> None:
        self.writer.close()
        self.temp.unlink(missing_ok=True)
