"""1 Hz rows that raw retention dropped from the database, read back from the lake.

When FITPIPE_LAKE_ROOT names a synced lake, `fitpipe export` and `Store.frame` at raw resolution
add the lake's rows of the participant's rollup-only days (ledger raw_dropped_at) to the query
as arrays, so the server orders and formats them with the rows it still has and nothing that was
measured becomes unreachable. A row the database still holds (a day retention dropped only in
part) is taken from the database, never twice.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import psycopg

from fitpipe.catalogue import Metric

ENV_LAKE_ROOT = "FITPIPE_LAKE_ROOT"


def lake_root() -> Path | None:
    value = os.environ.get(ENV_LAKE_ROOT, "").strip()
    if not value:
        return None
    root = Path(value)
    from fitpipe.lake.layout import MANIFEST

    return root if (root / MANIFEST).exists() else None


def applies(metric: Metric, resolution: str) -> bool:
    """Raw retention drops 1 Hz tables only; rollups stay in the database."""
    return resolution == "raw" and metric.resolution == "1s" and lake_root() is not None


def union_sql(metric: Metric, interval_columns: str = "") -> str:
    """The UNION ALL branch of lake rows (parameters lake_user, lake_t, lake_<value>);
    interval_columns: the measured rows' empty interval columns, when the export carries them."""
    casts = {"real": "real[]", "smallint": "smallint[]", "integer": "integer[]"}
    arrays = ", ".join(
        [r"CAST(%(lake_user)s AS integer[])", r"CAST(%(lake_t)s AS timestamptz[])"]
        + [f"CAST(%(lake_{c.name})s AS {casts[c.pg_type]})" for c in metric.values]
    )
    names = ", ".join(["user_id", "t", *(c.name for c in metric.values)])
    return (
        f" UNION ALL SELECT {names}"
        + (", false" if metric.imputable else "")
        + interval_columns
        + f" FROM unnest({arrays}) AS lake({names})"
        f" WHERE NOT EXISTS (SELECT FROM {metric.table} d"
        f" WHERE d.user_id = lake.user_id AND d.{metric.time_column} = lake.t)"
    )


def rows(conn: psycopg.Connection, metric: Metric, user_id: int, lo: dt.datetime, hi: dt.datetime) -> dict:
    """Parameters for union_sql: the lake's rows of the participant's rollup-only days in [lo, hi)."""
    empty: dict[str, list] = {"lake_user": [], "lake_t": [], **{f"lake_{c.name}": [] for c in metric.values}}
    days = [
        day
        for (day,) in conn.execute(
            "SELECT day FROM ingested_days WHERE user_id = %s AND raw_dropped_at IS NOT NULL AND day BETWEEN %s AND %s",
            (user_id, (lo - dt.timedelta(days=2)).date(), (hi + dt.timedelta(days=2)).date()),
        )
    ]
    root = lake_root()
    if not days or root is None:
        return empty
    from fitpipe.lake.reader import connect

    lake = connect(root)
    values = ", ".join(c.name for c in metric.values)
    found = lake.execute(
        f"SELECT user_id, {metric.time_column}, {values} FROM {metric.table} "
        f"WHERE user_id = ? AND ledger_day IN ({', '.join('?' for _ in days)}) "
        f"AND {metric.time_column} >= ? AND {metric.time_column} < ? ORDER BY {metric.time_column}",
        [user_id, *days, lo, hi],
    ).fetchnumpy()
    return {
        "lake_user": found["user_id"].tolist(),
        "lake_t": [t.to_pydatetime() for t in _timestamps(found[metric.time_column])],
        **{f"lake_{c.name}": found[c.name].tolist() for c in metric.values},
    }


def _timestamps(values):
    import pandas as pd

    return (
        pd.DatetimeIndex(values).tz_localize("UTC") if getattr(values, "tz", None) is None else pd.DatetimeIndex(values)
    )
