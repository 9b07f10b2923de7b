"""What the lake holds and where: one dataset per table, its Arrow types from the catalogue,
which local day owns each row, and the file paths.

    ROOT/_lake.json                                   the manifest (swapped in last)
    ROOT/_state/days-<generation>.parquet             per participant-day fingerprints it reflects
    ROOT/table=heart_rate/month=2024-03/part-u0001-u0010-<token>.parquet

Partitioning: by table, then by the month of the participant's local day, then (in the file
name) by a range of participants sized so that a participant-month file holds about a million
rows or more: 1 Hz heart rate is ~2.4 M rows per participant-month, so 10 participants per file
(~25 M rows, ~60 MB); 1-minute night tables and rollup_1h hold far less, so 100 per file; daily
tables and rollup_1d put the whole cohort of a month in one file. A change to one participant-day
rewrites one such file, never a whole month of the cohort.

Every row carries `ledger_day`, the participant's local day that owns it (the ledger's day):
the sync replaces exactly a day's rows by it, and readers can group by local day without
timezone arithmetic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from fitpipe.catalogue import METRICS, Column, DayWindow, Metric

MANIFEST = "_lake.json"
STATE_DIR = "_state"
# Files being written start with a dot: Spark, Hive, DuckDB globs and Polars all skip them.
TEMP_PREFIX = ".tmp-"
ROWS_PER_ROW_GROUP = 256 * 1024
# A (table, month, participant range) gains one small file per sync that only adds days; past
# this many, the next sync merges them into one.
MAX_FILES_PER_PARTITION = 8

ROLLUP_LEVELS = ("1min", "1h", "1d")


@dataclass(frozen=True)
class Field:
    name: str
    pg_type: str
    nullable: bool = False
    # Text columns with few values are dictionary-encoded.
    enum: bool = False


@dataclass(frozen=True)
class Dataset:
    """One table as the lake stores it."""

    name: str
    time_column: str
    fields: tuple[Field, ...]
    sort: tuple[str, ...]
    # Which rows a local day owns: a window of the day, or rows dated by it.
    window: DayWindow
    # "raw" datasets follow the ledger's content; "derived" ones (rollups, imputed values) follow
    # the rollups of the day.
    family: str
    users_per_file: int
    # SQL of the value expressions, in field order, over the table aliased t (enums as text).
    select: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return ("ledger_day", *(f.name for f in self.fields))

    def user_range(self, user_id: int) -> tuple[int, int]:
        first = (user_id - 1) // self.users_per_file * self.users_per_file + 1
        return first, first + self.users_per_file - 1


def _field(column: Column) -> Field:
    return Field(column.name, column.pg_type, column.nullable, enum=column.pg_type == "text")


def _users_per_file(metric: Metric) -> int:
    if metric.resolution == "1s":
        return 10
    if metric.resolution == "1min":
        return 100
    return 1000


def _metric_dataset(metric: Metric) -> Dataset:
    fields = tuple(_field(c) for c in metric.columns)
    return Dataset(
        name=metric.table,
        time_column=metric.time_column,
        fields=fields,
        sort=tuple(f.name for f in fields[: 2 + len(metric.extra_key)]),
        window=metric.window,
        family="raw",
        users_per_file=_users_per_file(metric),
        select=tuple(f"t.{f.name}" for f in fields),
    )


_ROLLUP_FIELDS = (
    Field("user_id", "integer"),
    Field("metric", "text", enum=True),
    Field("field", "text", enum=True),
    Field("bucket", "timestamptz"),
    Field("n_measured", "integer"),
    Field("sum_measured", "double precision"),
    Field("min_measured", "real", nullable=True),
    Field("max_measured", "real", nullable=True),
    Field("n_imputed", "integer"),
    Field("sum_imputed", "double precision"),
    Field("min_imputed", "real", nullable=True),
    Field("max_imputed", "real", nullable=True),
)


def _rollup_dataset(level: str) -> Dataset:
    return Dataset(
        name=f"rollup_{level}",
        time_column="bucket",
        fields=_ROLLUP_FIELDS,
        sort=("user_id", "metric", "field", "bucket"),
        window=DayWindow.CALENDAR,
        family="derived",
        users_per_file={"1min": 10, "1h": 100, "1d": 1000}[level],
        select=tuple(f"t.{f.name}::text" if f.enum else f"t.{f.name}" for f in _ROLLUP_FIELDS),
    )


_IMPUTED_FIELDS = (
    Field("user_id", "integer"),
    Field("metric", "text", enum=True),
    Field("field", "text", enum=True),
    Field("ts", "timestamptz"),
    Field("value", "real"),
    # The 90% predictive interval (migration 0080); empty for rows imputed before it.
    Field("lower", "real", nullable=True),
    Field("upper", "real", nullable=True),
    Field("method", "text", enum=True),
    Field("gap_minutes", "integer"),
    Field("imputed_at", "timestamptz"),
)

IMPUTED = Dataset(
    name="imputed_values",
    time_column="ts",
    fields=_IMPUTED_FIELDS,
    sort=("user_id", "metric", "field", "ts"),
    window=DayWindow.CALENDAR,
    family="derived",
    users_per_file=100,
    select=tuple(f"t.{f.name}" for f in _IMPUTED_FIELDS),
)

DATASETS: tuple[Dataset, ...] = (
    *(_metric_dataset(m) for m in METRICS),
    *(_rollup_dataset(level) for level in ROLLUP_LEVELS),
    IMPUTED,
)
BY_NAME: dict[str, Dataset] = {d.name: d for d in DATASETS}
FAMILIES = ("raw", "derived")


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def partition_dir(root: Path, dataset: str, month: str) -> Path:
    return root / f"table={dataset}" / f"month={month}"


def file_name(first_user: int, last_user: int, token: str) -> str:
    return f"part-u{first_user:04d}-u{last_user:04d}-{token}.parquet"
