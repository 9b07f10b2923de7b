"""PostgreSQL binary COPY, built with numpy instead of one Python call per row.

A row of fixed-width, non-null fields has the same layout every time, so a whole table's
rows are one numpy structured array: a field count, then (length, value) per column, all
big-endian. `tobytes()` of that array is the COPY stream. Columns that are text or hold
NULLs fall back to psycopg's `write_row`: the small per-night and per-day tables, and
imputed_values (its metric, field and method are text).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import psycopg

from fitpipe.timezones import aware_utc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_POSTGRES_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us")
_POSTGRES_EPOCH_DAY = np.datetime64("2000-01-01", "D")

# pg type -> (big-endian numpy type, byte length)
_FIXED = {
    "smallint": (">i2", 2),
    "integer": (">i4", 4),
    "bigint": (">i8", 8),
    "real": (">f4", 4),
    "double precision": (">f8", 8),
    "boolean": ("?", 1),
    "timestamptz": (">i8", 8),
    "date": (">i4", 4),
}


def _wire_values(pg_type: str, values: np.ndarray) -> np.ndarray:
    if pg_type == "timestamptz":
        return (values.astype("datetime64[us]") - _POSTGRES_EPOCH_US).astype(np.int64)
    if pg_type == "date":
        return (values.astype("datetime64[D]") - _POSTGRES_EPOCH_DAY).astype(np.int32)
    return values


def vectorisable(pg_types: Sequence[str], columns: Sequence[np.ndarray]) -> bool:
    for pg_type, values in zip(pg_types, columns, strict=True):
        if pg_type not in _FIXED:
            return False
        if values.dtype.kind == "f" and np.isnan(values).any():
            return False
        if values.dtype.kind == "M" and np.isnat(values).any():
            return False
    return True


# Rows per block: the server starts on one block while the next is encoded.
BLOCK_ROWS = 32_768


def _encode_rows(pg_types: Sequence[str], columns: Sequence[np.ndarray | None]) -> bytes:
    """Rows of one fixed layout: a field count, then (length, value) per column, big-endian.

    A column may be None (NULL in every row: length -1, no value) or an array of fixed-width bytes
    (`S<n>`, e.g. an enum label, which travels as its text).
    """
    fields = [("count", ">i2")]
    for i, (pg_type, values) in enumerate(zip(pg_types, columns, strict=True)):
        fields.append((f"len{i}", ">i4"))
        if values is not None:
            fields.append((f"val{i}", values.dtype.str if values.dtype.kind == "S" else _FIXED[pg_type][0]))
    rows = np.empty(next((len(c) for c in columns if c is not None), 0), dtype=np.dtype(fields))
    rows["count"] = len(pg_types)
    for i, (pg_type, values) in enumerate(zip(pg_types, columns, strict=True)):
        if values is None:
            rows[f"len{i}"] = -1
        elif values.dtype.kind == "S":
            rows[f"len{i}"], rows[f"val{i}"] = values.dtype.itemsize, values
        else:
            rows[f"len{i}"], rows[f"val{i}"] = _FIXED[pg_type][1], _wire_values(pg_type, values)
    return rows.tobytes()


def encode_blocks(pg_types: Sequence[str], columns: Sequence[np.ndarray]) -> Iterator[bytes]:
    """The binary COPY stream (signature, rows, trailer) for fixed-width, non-null columns, in blocks."""
    yield SIGNATURE
    total = len(columns[0])
    for start in range(0, total, BLOCK_ROWS):
        yield _encode_rows(pg_types, [values[start : start + BLOCK_ROWS] for values in columns])
    yield TRAILER


def encode_row_groups(groups: Sequence[tuple[Sequence[str], Sequence[np.ndarray | None]]]) -> Iterator[bytes]:
    """One binary COPY stream from groups of rows that each have a fixed layout (see _encode_rows).
    Rows of different layouts can share a stream because each row carries its own field lengths."""
    yield SIGNATURE
    for pg_types, columns in groups:
        yield _encode_rows(pg_types, columns)
    yield TRAILER


def encode(pg_types: Sequence[str], columns: Sequence[np.ndarray]) -> bytes:
    """The whole stream as one bytes object."""
    return b"".join(encode_blocks(pg_types, columns))


def _python_value(pg_type: str, value):
    if value is None:
        return None
    if isinstance(value, np.floating) and np.isnan(value):
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        if pg_type == "date":
            return value.astype("datetime64[D]").item()
        return aware_utc(value)
    if pg_type in ("smallint", "integer", "bigint"):
        return int(value)
    if pg_type == "boolean":
        return bool(value)
    if pg_type in ("real", "double precision"):
        return float(value)
    return str(value)


def copy_rows(
    cursor: psycopg.Cursor, table: str, names: Sequence[str], pg_types: Sequence[str], columns: Sequence[np.ndarray]
) -> int:
    """COPY the columns into `table` in binary; returns the number of rows."""
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    count = len(columns[0])
    with cursor.copy(statement) as copy:
        if vectorisable(pg_types, columns):
            for block in encode_blocks(pg_types, columns):
                copy.write(block)
        else:
            copy.set_types(list(pg_types))
            for row in zip(*columns, strict=True):
                copy.write_row([_python_value(t, v) for t, v in zip(pg_types, row, strict=True)])
    return count
