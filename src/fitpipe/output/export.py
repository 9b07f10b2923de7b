"""`fitpipe export`: a metric as CSV, streamed from the server with COPY TO STDOUT, or as
Parquet written one row group at a time from a server-side cursor (fitpipe.output.parquet).

Nothing is held in memory beyond one COPY block. A regular file is written under a temporary name
and renamed into place only when complete, so an error never leaves a partial file behind; a
device or FIFO is written straight through (fitpipe.output.target).

Columns, always in this order: user_id, time (ISO-8601 with offset), the metric's value
columns in catalogue order, then for rollups `n` (samples), and `imputed` where imputation
applies (raw/1min: whether the row is imputed; 1h/1d: whether any imputed minute is in it,
plus `imputed_share`, the share of samples that were imputed). With --with-imputed, raw and
1min rows end with `<field>_lower` and `<field>_upper`: the 90% predictive interval of an imputed
minute (empty for measured rows, NaN in Parquet; hourly and daily rows have none, since the minutes of an hour
are correlated: use --draws for the uncertainty of aggregates).
"""

from __future__ import annotations

import datetime as dt
import select
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import psycopg
from psycopg import sql

from fitpipe.catalogue import DayWindow, Metric
from fitpipe.catalogue import metric as metric_named
from fitpipe.db import one_row
from fitpipe.errors import BadInput, NoData
from fitpipe.output.target import check_target, open_target
from fitpipe.participants import User, list_users

RESOLUTIONS = ("raw", "1min", "1h", "1d")
DEFAULT_MAX_ROWS = 1_000_000
_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'


@dataclass
class ExportResult:
    resolution: str
    rows: int
    note: str = ""


def _bounds(user: User, start: dt.date | None, end: dt.date | None, hour: int = 0) -> tuple[dt.datetime, dt.datetime]:
    """[lo, hi) of the local days start..end, each starting at `hour` (12 for night metrics)."""
    lo = user.day_start(start, hour) if start else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    hi = user.day_start(end + dt.timedelta(days=1), hour) if end else dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    return lo, hi


def _owned_from_hour(metric: Metric, resolution: str) -> int:
    """Night metrics belong to the night that starts on day D, [D 12:00, D+1 12:00), as in the
    ledger (and so in the auto-resolution estimate); daily rollups are calendar days."""
    return 12 if metric.window is DayWindow.NIGHT and resolution != "1d" else 0


def _raw_query(metric: Metric, with_imputed: bool, typed: bool = False, from_lake: bool = False) -> str:
    """typed: times stay timestamptz/date (Parquet) instead of ISO-8601 text (CSV); from_lake:
    with the lake's rows of days raw retention dropped (fitpipe.lake.retained)."""
    time_col = metric.time_column
    values = [c.name for c in metric.values]
    keys = [c.name for c in metric.extra_key]
    intervals = metric.imputable and with_imputed
    # Measured rows have no interval: empty in CSV; NaN where typed (frames, Parquet), which keeps
    # every row of one fixed layout, so 1-second heart rate is still read with binary COPY.
    no_interval = "'NaN'::real" if typed else "NULL::real"
    interval_columns = "".join(f", {no_interval} AS {v}_lower, {no_interval} AS {v}_upper" for v in values if intervals)
    measured = (
        f"SELECT user_id, {time_col} AS t, {', '.join(keys + values)}"
        + (", false AS imputed" if metric.imputable else "")
        + interval_columns
        + f" FROM {metric.table} WHERE user_id = %(user_id)s AND {time_col} >= %(lo)s AND {time_col} < %(hi)s"
    )
    if metric.window is DayWindow.DATE:
        measured = measured.replace("%(lo)s", "%(lo_day)s").replace("%(hi)s", "%(hi_day)s")
    body = measured
    if from_lake:
        from fitpipe.lake.retained import union_sql

        body += union_sql(metric, interval_columns)
    if metric.imputable and with_imputed:
        pivot = ", ".join(f"max(value) FILTER (WHERE field = '{v}')" for v in values)
        pivot += ", true" + "".join(
            f", max(lower) FILTER (WHERE field = '{v}'), max(upper) FILTER (WHERE field = '{v}')" for v in values
        )
        body += (
            f" UNION ALL SELECT user_id, ts, {pivot} FROM imputed_values"
            f" WHERE user_id = %(user_id)s AND metric = '{metric.name}' AND ts >= %(lo)s AND ts < %(hi)s"
            " GROUP BY user_id, ts"
        )
    shown = ", ".join(keys + values) + (", imputed" if metric.imputable else "")
    shown += "".join(f", {v}_lower, {v}_upper" for v in values if intervals)
    if typed:
        outer_time = "t"
    else:
        outer_time = "to_char(t, '" + _TIME_FORMAT + "')" if metric.window is not DayWindow.DATE else "t::text"
    return (
        f"SELECT user_id, {outer_time} AS {time_col}, {shown} FROM ({body}) rows"
        f" ORDER BY user_id, rows.t{''.join(', ' + k for k in keys)}"
    )


def _rollup_query(metric: Metric, level: str, with_imputed: bool, typed: bool = False) -> str:
    columns = []
    for column in metric.values:
        only = f"field = '{column.name}'"
        if with_imputed:
            total = "(sum_measured + sum_imputed)"
            count = "(n_measured + n_imputed)"
            low, high = "least(min_measured, min_imputed)", "greatest(max_measured, max_imputed)"
        else:
            total, count, low, high = "sum_measured", "n_measured", "min_measured", "max_measured"
        value = total if metric.rollup == "sum" else f"{total} / nullif({count}, 0)"
        columns += [
            f"max({value}) FILTER (WHERE {only}) AS {column.name}",
            f"max({low}) FILTER (WHERE {only}) AS {column.name}_min",
            f"max({high}) FILTER (WHERE {only}) AS {column.name}_max",
        ]
    n = "max(n_measured + n_imputed)" if with_imputed else "max(n_measured)"
    columns.append(f"{n} AS n")
    if metric.imputable:
        columns.append("bool_or(n_imputed > 0) AS imputed" if with_imputed else "false AS imputed")
        columns.append(
            "round((max(n_imputed)::numeric / nullif(max(n_measured + n_imputed), 0)), 4)::float8 AS imputed_share"
            if with_imputed
            else "0::float8 AS imputed_share"
        )
    if metric.imputable and with_imputed and level == "1min":
        # A minute is imputed only when nothing was measured in it, so its interval is the imputed row's.
        for column in metric.values:
            for end in ("lower", "upper"):
                columns.append(
                    f"(SELECT i.{end} FROM imputed_values i WHERE i.user_id = rollup_1min.user_id"
                    f" AND i.metric = %(metric)s AND i.field = '{column.name}' AND i.ts = rollup_1min.bucket)"
                    f" AS {column.name}_{end}"
                )
    # metric is an enum in the rollups; the cast keeps the index usable when a client binds varchar.
    where = (
        "user_id = %(user_id)s AND metric = CAST(%(metric)s AS rollup_metric) AND bucket >= %(lo)s AND bucket < %(hi)s"
    )
    if not with_imputed:
        where += " AND n_measured > 0"
    bucket = f"rollup_{level}.bucket" if typed else f"to_char(bucket, '{_TIME_FORMAT}')"
    return (
        f"SELECT user_id, {bucket} AS bucket, {', '.join(columns)}"
        f" FROM rollup_{level} WHERE {where} GROUP BY user_id, rollup_{level}.bucket ORDER BY rollup_{level}.bucket"
    )


def estimate_rows(conn: psycopg.Connection, metric: Metric, users: Sequence[User], start, end) -> dict[str, int]:
    """Rows each resolution would give, from the ledger (cheap at any size)."""
    raw, days = one_row(
        conn.execute(
            "SELECT coalesce(sum((rows_by_metric ->> %s)::bigint), 0), count(*) FROM ingested_days "
            "WHERE user_id = ANY(%s) AND day >= %s AND day <= %s",
            (metric.name, [u.user_id for u in users], start or dt.date.min, end or dt.date.max),
        )
    )
    minutes = raw // metric.samples_per_minute
    return {"raw": int(raw), "1min": int(minutes), "1h": int(min(minutes, days * 25)), "1d": int(days)}


def choose_resolution(estimates: dict[str, int], max_rows: int) -> str:
    for resolution in RESOLUTIONS:
        if estimates[resolution] <= max_rows:
            return resolution
    return "1d"


def copy_out(conn: psycopg.Connection, copy_sql: str, out: BinaryIO) -> int:
    """Run a COPY ... TO STDOUT and write every block to `out`; returns the rows COPY reports.

    A CSV COPY arrives as one message per row. psycopg's iterator costs about a microsecond of
    Python per message, which on two cores competes with the server; draining libpq directly
    is about 2x cheaper in client CPU.
    """
    with conn.cursor().copy(copy_sql):
        pgconn = conn.pgconn
        write = out.write
        while True:
            size, data = pgconn.get_copy_data(1)
            if size > 0:
                write(data)
            elif size == 0:  # nothing buffered yet: wait for the socket
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            else:
                break
        if size == -2:
            raise psycopg.OperationalError(pgconn.get_error_message())
        rows = -1
        while (result := pgconn.get_result()) is not None:
            if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            rows = result.command_tuples or 0
    return rows


def query_params(
    user: User, metric: Metric, start: dt.date | None, end: dt.date | None, resolution: str = "raw"
) -> dict:
    lo, hi = _bounds(user, start, end, _owned_from_hour(metric, resolution))
    return {
        "user_id": user.user_id,
        "metric": metric.name,
        "lo": lo,
        "hi": hi,
        "lo_day": start or dt.date(1970, 1, 1),
        "hi_day": (end or dt.date(9000, 12, 31)) + dt.timedelta(days=1),
    }


def query_parts(
    users: Sequence[User], metric: Metric, start, end, tz: str, resolution: str = "raw"
) -> list[tuple[str, dict]]:
    """(session zone, parameters) per participant, and per zone they lived in for --tz local:
    to_char() writes times in the session zone, so each span is read in its own zone."""
    parts = []
    for user in users:
        params = query_params(user, metric, start, end, resolution)
        if tz != "local":
            parts.append(("UTC", params))
        elif metric.window is DayWindow.DATE:
            parts.append((user.timezone, params))
        else:
            for zone, lo, hi in user.zone_spans(params["lo"], params["hi"]):
                parts.append((zone, {**params, "lo": lo, "hi": hi}))
    return parts


def _stream(conn: psycopg.Connection, parts: Sequence[tuple[str, dict]], query: str, out: BinaryIO) -> int:
    rows = 0
    header = True
    for zone, params in parts:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL TimeZone = {}").format(sql.Literal(zone)))
            bound = psycopg.ClientCursor(conn).mogrify(query, params)
            copy_sql = f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER {'true' if header else 'false'})"
            rows += copy_out(conn, copy_sql, out)
        header = False
    return rows


def write_csv(conn: psycopg.Connection, prepared: ExportQuery, out: BinaryIO) -> int:
    """A prepared request's CSV, byte for byte what `fitpipe export` writes; returns the rows."""
    return _stream(conn, prepared.parts, prepared.query, out)


@dataclass
class ExportQuery:
    """What to read: the checked request, its resolution, the SQL and its (session zone, params) parts."""

    metric: Metric
    resolution: str
    query: str
    parts: list[tuple[str, dict]]
    note: str = ""


def prepare(
    conn: psycopg.Connection,
    *,
    metric_name: str,
    user_ids: Sequence[int] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    resolution: str = "auto",
    with_imputed: bool = False,
    tz: str = "utc",
    max_rows: int = DEFAULT_MAX_ROWS,
    typed: bool = False,
) -> ExportQuery:
    """Check an export request and build its query; shared by `fitpipe export` and `Store.frame`."""
    metric = metric_named(metric_name)
    if tz not in ("utc", "local"):
        raise BadInput(f"--tz must be utc or local, got {tz!r}")
    if resolution not in (*RESOLUTIONS, "auto"):
        raise BadInput(f"--resolution must be one of raw, 1min, 1h, 1d, auto; got {resolution!r}")
    if start and end and end < start:
        raise BadInput(f"--end {end} is before --start {start}")
    if resolution not in ("raw", "auto") and not metric.intraday:
        raise BadInput(f"metric {metric.name!r} has no rollups; use --resolution raw")
    if with_imputed and not metric.imputable:
        raise BadInput(f"metric {metric.name!r} is never imputed; drop --with-imputed")
    users = list_users(conn, user_ids)
    estimates = estimate_rows(conn, metric, users, start, end)
    note = ""
    if resolution == "auto":
        resolution = choose_resolution(estimates, max_rows) if metric.intraday else "raw"
        note = (
            f"auto resolution: {resolution} (about {estimates[resolution]:,} rows; budget {max_rows:,}; "
            f"raw would be about {estimates['raw']:,})"
        )
    if estimates["raw"] == 0 and not with_imputed:
        raise NoData(f"no {metric.name} data for the selected participants and days; nothing to export")
    from fitpipe.lake import retained

    from_lake = retained.applies(metric, resolution)
    query = (
        _raw_query(metric, with_imputed, typed, from_lake)
        if resolution == "raw"
        else _rollup_query(metric, resolution, with_imputed, typed)
    )
    parts = query_parts(users, metric, start, end, tz, resolution)
    if from_lake:
        parts = [(zone, {**p, **retained.rows(conn, metric, p["user_id"], p["lo"], p["hi"])}) for zone, p in parts]
    return ExportQuery(metric, resolution, query, parts, note)


def export(
    conn: psycopg.Connection,
    *,
    metric_name: str,
    user_ids: Sequence[int] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    resolution: str = "auto",
    with_imputed: bool = False,
    tz: str = "utc",
    output: str = "-",
    max_rows: int = DEFAULT_MAX_ROWS,
    fmt: str = "csv",
) -> ExportResult:
    if fmt not in ("csv", "parquet"):
        raise BadInput(f"--format must be csv or parquet, got {fmt!r}")
    if fmt == "parquet" and output == "-":
        raise BadInput("--format parquet needs --output FILE (a Parquet file ends with its index)")
    # The path is checked before any query runs, so a bad one costs nothing.
    target = None if output == "-" else check_target(output, "--output")
    typed = fmt == "parquet"
    prepared = prepare(
        conn,
        metric_name=metric_name,
        user_ids=user_ids,
        start=start,
        end=end,
        resolution=resolution,
        with_imputed=with_imputed,
        tz=tz,
        max_rows=max_rows,
        typed=typed,
    )
    metric, resolution, query, note = prepared.metric, prepared.resolution, prepared.query, prepared.note
    conn.commit()
    if target is None:
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise BadInput("standard output is closed; give --output FILE")
        rows = write_csv(conn, prepared, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return ExportResult(resolution, rows, note)
    with open_target(target) as out:
        if typed:
            from fitpipe.output.parquet import write_parquet

            rows = write_parquet(conn, [(query, params) for _, params in prepared.parts], out)
        else:
            rows = write_csv(conn, prepared, out)
        if rows == 0 and not target.write_through:
            raise BadInput(
                f"no {metric.name} rows at resolution {resolution} in the range; nothing written"
                + (" (run `fitpipe aggregate refresh`?)" if resolution != "raw" else "")
            )
    return ExportResult(resolution, rows, note)
