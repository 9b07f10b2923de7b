"""Parquet output for export: a server-side cursor read in batches, one row group per batch,
so memory stays bounded by the batch size whatever the range. Times are UTC instants."""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import BinaryIO

import psycopg

ROW_GROUP_ROWS = 100_000

# PostgreSQL type oid -> Arrow type name
_ARROW_TYPES = {
    16: "bool_",
    20: "int64",
    21: "int16",
    23: "int32",
    25: "string",
    700: "float32",
    701: "float64",
    1700: "float64",
    1082: "date32",
    1184: "timestamp",
}


def _arrow_type(oid: int):
    import pyarrow as pa

    name = _ARROW_TYPES.get(oid, "string")
    if name == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return getattr(pa, name)()


def write_parquet(conn: psycopg.Connection, queries: Sequence[tuple[str, dict]], out: BinaryIO) -> int:
    """Run each (query, params) in turn and append its rows to one Parquet file; returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    try:
        for query, params in queries:
            with conn.transaction(), conn.cursor(name="fitpipe_export_parquet") as cursor:
                cursor.execute(query, params)
                while batch := cursor.fetchmany(ROW_GROUP_ROWS):
                    if writer is None:
                        assert cursor.description is not None  # rows came back, so their columns are described
                        schema = pa.schema([(d.name, _arrow_type(d.type_code)) for d in cursor.description])
                        writer = pq.ParquetWriter(out, schema)
                    columns = list(zip(*batch, strict=True))
                    arrays = [
                        pa.array([float(v) if isinstance(v, decimal.Decimal) else v for v in values], type=field.type)
                        for values, field in zip(columns, writer.schema, strict=True)
                    ]
                    writer.write_table(pa.Table.from_arrays(arrays, schema=writer.schema))
                    rows += len(batch)
    finally:
        if writer is not None:
            writer.close()
    return rows
