"""The Python API: run the pipeline as cron does, and read the same data as `fitpipe export`.

    import fitpipe
    store = fitpipe.connect()                      # FITPIPE_DATABASE_URL or the local default
    night = store.ingest(days=1)                   # a RunResult; night.exit_code is the CLI's
    hr = store.frame("heart_rate", users=[1, 2], start="2024-01-01", end="2024-01-07", resolution="1h")

The run methods (`ingest`, `backfill`, `import_archive`, `refresh`, `maintain`) call the library
functions the CLI calls and return their result objects, so an orchestrator (Airflow, Dagster, a
notebook) runs a night the way cron does. `frame` builds its query with the exporter's own code
(fitpipe.output.export.prepare), so it returns the rows and values a CSV export of the same
request holds. Queries with one fixed-width layout are read with binary COPY straight into numpy
(fitpipe.output.frames); the others through pandas.read_sql on a SQLAlchemy engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from fitpipe.catalogue import DayWindow
from fitpipe.catalogue import metric as metric_named
from fitpipe.config import database_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# pandas dtypes for the catalogue's column types: nullable integers keep NULLs as <NA>.
_DTYPES = {
    "smallint": "Int16",
    "integer": "Int32",
    "bigint": "Int64",
    "real": "float32",
    "double precision": "float64",
    "boolean": "boolean",
    "text": "string",
}


@overload
def _day(value: str | dt.date) -> dt.date: ...
@overload
def _day(value: None) -> None: ...
@overload
def _day(value: str | dt.date | None) -> dt.date | None: ...


def _day(value: str | dt.date | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


class Store:
    """A fitpipe database. Cheap to create; connects on first use."""

    def __init__(self, url: str | None = None):
        self.url = database_url(url)
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.engine import make_url

            self._engine = create_engine(make_url(self.url).set(drivername="postgresql+psycopg"))
        return self._engine

    def _connection(self):
        from fitpipe.db import connect

        return connect(self.url)

    def ingest(
        self,
        days: int = 1,
        users: Sequence[int] | None = None,
        *,
        workers: int | None = None,
        refresh: bool = True,
        max_wait: float = 60.0,
    ):
        """`fitpipe ingest --days N`: a pipeline.RunResult (`.problem()` is the error the CLI exits with)."""
        from fitpipe import pipeline

        with self._connection() as conn:
            self._require_schema(conn)
            return pipeline.ingest(
                conn, days, users or [], url=self.url, workers=workers, refresh=refresh, max_wait=max_wait
            )

    def backfill(
        self,
        start: str | dt.date,
        end: str | dt.date,
        users: Sequence[int] | None = None,
        *,
        force: bool = False,
        workers: int | None = None,
        refresh: bool = True,
        max_wait: float = 60.0,
    ):
        """`fitpipe backfill`: a pipeline.RunResult."""
        from fitpipe import pipeline

        with self._connection() as conn:
            self._require_schema(conn)
            return pipeline.backfill(
                conn,
                _day(start),
                _day(end),
                users or [],
                url=self.url,
                force=force,
                workers=workers,
                refresh=refresh,
                max_wait=max_wait,
            )

    def import_archive(
        self,
        path: str | Path,
        user: int,
        *,
        timezone: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        all_days: bool = False,
        workers: int | None = None,
        refresh: bool = True,
    ):
        """`fitpipe import`: an ImportOutcome (its `.report` lists what the archive holds)."""
        from fitpipe.sources.takeout.importer import import_archive

        with self._connection() as conn:
            self._require_schema(conn)
            return import_archive(
                conn,
                Path(path),
                user,
                url=self.url,
                timezone=timezone,
                dry_run=dry_run,
                force=force,
                all_days=all_days,
                workers=workers,
                refresh=refresh,
            )

    def refresh(self, users: Sequence[int] | None = None, *, full: bool = False):
        """`fitpipe aggregate refresh`: a RefreshReport."""
        from fitpipe.derive.rollups import refresh

        with self._connection() as conn:
            self._require_schema(conn)
            return refresh(conn, users or [], full=full)

    def maintain(self, raw_retention_days: int | None = None):
        """`fitpipe maintain`: a MaintainReport."""
        from fitpipe.derive.maintain import maintain

        with self._connection() as conn:
            self._require_schema(conn)
            return maintain(conn, raw_retention_days)

    @staticmethod
    def _require_schema(conn) -> None:
        from fitpipe.migrate import require_schema

        require_schema(conn)

    def frame(
        self,
        metric: str,
        users: Sequence[int] | None = None,
        start: str | dt.date | None = None,
        end: str | dt.date | None = None,
        resolution: str = "auto",
        with_imputed: bool = False,
        tz: str = "local",
        max_rows: int = 1_000_000,
        draws: int | None = None,
        seed: int | None = None,
    ):
        """One metric as a DataFrame, with the columns of `fitpipe export`.

        Times are tz-aware: in UTC with tz="utc"; with tz="local", in each participant's zone at
        the time. When the selection spans several zones, the time column holds Timestamps
        of several zones (object dtype), as one dtype cannot carry more than one zone.

        with_imputed adds each imputed minute's 90% interval (<field>_lower, <field>_upper) at
        raw and 1min. draws=M returns `fitpipe export --draws M`: M complete 1-minute series
        (column draw) in which each gap is a joint random draw; the same seed gives the same draws.
        """
        import pandas as pd

        if draws is not None:
            return self._draws(metric, users, start, end, tz, draws, seed)

        from fitpipe.output.export import prepare
        from fitpipe.output.frames import read_columns

        catalogue = metric_named(metric)
        with self._connection() as conn:
            prepared = prepare(
                conn,
                metric_name=metric,
                user_ids=users or [],
                start=_day(start),
                end=_day(end),
                resolution=resolution,
                with_imputed=with_imputed,
                tz=tz,
                max_rows=max_rows,
                typed=True,
            )
            columns = [read_columns(conn, prepared.query, params) for _, params in prepared.parts]
        copied = [None if read is None else pd.DataFrame(read) for read in columns]
        if any(piece is None for piece in copied):
            # not one fixed layout (text, numeric or NULLs): read the ordinary way
            with self.engine.connect() as engine_conn:
                pieces = [
                    pd.read_sql_query(_bind(prepared.query, params), engine_conn) if piece is None else piece
                    for piece, (_, params) in zip(copied, prepared.parts, strict=True)
                ]
        else:
            pieces = [piece for piece in copied if piece is not None]
        time_column = catalogue.time_column if prepared.resolution == "raw" else "bucket"
        for piece, (zone, _) in zip(pieces, prepared.parts, strict=True):
            if catalogue.window is not DayWindow.DATE or prepared.resolution != "raw":
                piece[time_column] = pd.to_datetime(piece[time_column], utc=True).dt.tz_convert(zone)
            else:
                piece[time_column] = pd.to_datetime(piece[time_column]).dt.date
        frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        return _typed(frame, catalogue, prepared.resolution)

    def _draws(self, metric, users, start, end, tz, draws: int, seed: int | None):
        import pandas as pd

        from fitpipe.output.draws import iter_draws, new_seed

        with self._connection() as conn:
            frames = list(
                iter_draws(
                    conn,
                    metric_name=metric,
                    user_ids=users or [],
                    start=_day(start),
                    end=_day(end),
                    draws=draws,
                    seed=new_seed() if seed is None else seed,
                    tz=tz,
                )
            )
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(frames):
            frame["user_id"] = frame["user_id"].astype("Int32")
            frame["imputed"] = frame["imputed"].astype("boolean")
        return frame

    def status(self, users: Sequence[int] | None = None) -> dict[str, Any]:
        """What `fitpipe status --json` shows: per participant, cursor, day states, rows."""
        from fitpipe.output.status import collect_status

        with self._connection() as conn:
            return collect_status(conn, users or [])

    def adherence(self, as_of: str | dt.date | None = None, users: Sequence[int] | None = None, **thresholds):
        """`fitpipe adherence` as a DataFrame, one row per participant, worst first."""
        import pandas as pd

        from fitpipe.derive.adherence import Thresholds, adherence

        with self._connection() as conn:
            _, rows = adherence(conn, users or [], _day(as_of), Thresholds(**thresholds))
        return pd.DataFrame(rows)


def _bind(query: str, params: dict):
    """psycopg's %(name)s placeholders as SQLAlchemy bound parameters."""
    import re

    from sqlalchemy import text

    used = set(re.findall(r"%\((\w+)\)s", query))
    return text(re.sub(r"%\((\w+)\)s", r":\1", query)).bindparams(**{k: v for k, v in params.items() if k in used})


def _typed(frame, metric, resolution: str):
    if resolution == "raw":
        for column in metric.columns[2:]:
            if column.name in frame and column.pg_type in _DTYPES and column.pg_type not in ("timestamptz", "date"):
                frame[column.name] = frame[column.name].astype(_DTYPES[column.pg_type])
    else:
        # The rollups keep each bucket's smallest and largest value as stored: real.
        for column in metric.values:
            for name in (f"{column.name}_min", f"{column.name}_max"):
                if name in frame:
                    frame[name] = frame[name].astype("float32")
    if "user_id" in frame:
        frame["user_id"] = frame["user_id"].astype("Int32")
    if "imputed" in frame:
        frame["imputed"] = frame["imputed"].astype("boolean")
    return frame


def connect(url: str | None = None) -> Store:
    """Open a fitpipe store: the URL, else FITPIPE_DATABASE_URL, else the local default."""
    return Store(url)
