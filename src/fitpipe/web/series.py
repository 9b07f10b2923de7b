"""One participant's metric over a range of local days, for the charts: the export's own request
(fitpipe.output.export.prepare, auto-resolution included) and its own CSV bytes (write_csv, as
`fitpipe export --tz local` writes them), turned into columns. So a chart shows exactly the rows
and values an export of the same range, resolution and budget holds."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import psycopg

from fitpipe.catalogue import DayWindow, Metric
from fitpipe.errors import BadInput
from fitpipe.output.export import ExportQuery, prepare, write_csv
from fitpipe.participants import User

# The budget a chart may ask for: beyond a few screens' worth of pixels it is a download, not a view.
MAX_POINTS = 20_000
MIN_POINTS = 10
# A range longer than this is not a view of one participant's study.
MAX_DAYS = 3660
_BOOLEAN = {"t": True, "f": False}


@dataclass(frozen=True)
class SeriesRequest:
    metric: str
    start: dt.date
    end: dt.date
    resolution: str = "auto"
    points: int = 2000
    with_imputed: bool = False

    def check(self) -> None:
        if self.end < self.start:
            raise BadInput(f"end {self.end} is before start {self.start}")
        if (self.end - self.start).days + 1 > MAX_DAYS:
            raise BadInput(f"a range of at most {MAX_DAYS} days, got {(self.end - self.start).days + 1}")
        if self.points < MIN_POINTS:
            raise BadInput(f"points must be at least {MIN_POINTS}, got {self.points}")


def prepared_request(conn: psycopg.Connection, user: User, request: SeriesRequest, *, typed: bool = False):
    """The export's own preparation of this request, in the participant's local time."""
    request.check()
    return prepare(
        conn,
        metric_name=request.metric,
        user_ids=[user.user_id],
        start=request.start,
        end=request.end,
        resolution=request.resolution,
        with_imputed=request.with_imputed,
        tz="local",
        max_rows=request.points,
        typed=typed,
    )


def _converter(metric: Metric, name: str, resolution: str):
    """How one CSV column becomes JSON: numbers as numbers, flags as booleans, the rest as text."""
    if resolution == "raw":
        types = {c.name: c.pg_type for c in metric.columns}
        kind = types.get(name, "boolean" if name == "imputed" else "real")
    else:
        kind = {"bucket": "text", "imputed": "boolean"}.get(name, "real")
    if name == "user_id":
        return int
    if kind == "boolean":
        return lambda text: _BOOLEAN.get(text)
    if kind in ("text", "date", "timestamptz"):
        return lambda text: text if text != "" else None
    if kind in ("smallint", "integer", "bigint"):
        return lambda text: int(text) if text != "" else None
    return lambda text: float(text) if text != "" else None


def _instant(text: str, metric: Metric, resolution: str, user: User) -> float:
    """Seconds since the epoch of a row's time; a daily row stands at the middle of its local day."""
    if metric.window is DayWindow.DATE and resolution == "raw":
        day = dt.date.fromisoformat(text)
        lo, hi = user.day_start(day), user.day_start(day + dt.timedelta(days=1))
        return (lo + (hi - lo) / 2).timestamp()
    return dt.datetime.fromisoformat(text).timestamp()


def read_series(conn: psycopg.Connection, user: User, request: SeriesRequest) -> dict[str, Any]:
    """The request's rows as columns: `time` as the export writes it, `t` in epoch seconds."""
    if request.points > MAX_POINTS:
        raise BadInput(
            f"points must be at most {MAX_POINTS} for a chart; download the view for more, got {request.points}"
        )
    prepared: ExportQuery = prepared_request(conn, user, request)
    buffer = io.BytesIO()
    rows = write_csv(conn, prepared, buffer)
    reader = csv.reader(io.StringIO(buffer.getvalue().decode("utf-8")))
    header = next(reader, [])
    time_column = prepared.metric.time_column if prepared.resolution == "raw" else "bucket"
    # Column by column (transpose, then one map per column): about a quarter less Python per
    # request than converting cell by cell, for a day view's ~1,400 rows.
    texts = list(zip(*reader, strict=True)) or [() for _ in header]
    columns: dict[str, list] = {
        name: list(map(_converter(prepared.metric, name, prepared.resolution), column))
        for name, column in zip(header, texts, strict=True)
    }
    instants = [_instant(text, prepared.metric, prepared.resolution, user) for text in columns.get(time_column, [])]
    days = (request.end - request.start).days + 1
    day_starts = [user.day_start(request.start + dt.timedelta(days=i)).timestamp() for i in range(days + 1)]
    hour = 12 if prepared.metric.window is DayWindow.NIGHT and prepared.resolution != "1d" else 0
    return {
        "participant": user.user_id,
        "metric": prepared.metric.name,
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "resolution": prepared.resolution,
        "points": request.points,
        "with_imputed": request.with_imputed,
        "note": prepared.note,
        "rows": rows,
        "time_column": time_column,
        # The instants the local days start and end (the chart's x range), and each day's start.
        "window": [day_starts[0], day_starts[-1]],
        "day_starts": day_starts,
        "owned_from_hour": hour,
        "columns": header,
        "t": instants,
        "data": columns,
    }
