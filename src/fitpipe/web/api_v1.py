"""The data API, /api/v1: what the pages show, as JSON; and a view's rows as the export's CSV or Parquet."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO, cast

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fitpipe.errors import BadInput, NoData
from fitpipe.output.export import DEFAULT_MAX_ROWS, RESOLUTIONS, write_csv
from fitpipe.web import params
from fitpipe.web.cohort import SORT_KEYS, cohort
from fitpipe.web.pipeline_view import pipeline
from fitpipe.web.responses import Json
from fitpipe.web.series import SeriesRequest, prepared_request, read_series

DEFAULT_POINTS = 2000
_CHUNK = 1 << 16


def participants(request: Request) -> Response:
    sort = params.choice(request, "sort", SORT_KEYS, "worst")
    with request.app.state.db.connection() as conn:
        return Json(cohort(conn, params.day(request, "as_of"), sort))


def participant(request: Request) -> Response:
    with request.app.state.db.connection() as conn:
        user = params.participant(conn, request.path_params["user_id"])
    return Json(
        {
            "user_id": user.user_id,
            "display_name": user.display_name,
            "source": user.source,
            "timezone": user.timezone,
            "study_start": user.study_start,
            "withdrawn_at": user.withdrawn_at,
            "timezone_history": [{"from": first, "timezone": zone} for first, zone in user.zones],
        }
    )


def _series_request(request: Request, user, *, points_default: int) -> SeriesRequest:
    end = params.day(request, "end")
    start = params.day(request, "start")
    if start is None or end is None:
        raise BadInput("give start and end, local days like 2024-01-31")
    return SeriesRequest(
        metric=request.path_params["metric"],
        start=start,
        end=end,
        resolution=params.choice(request, "resolution", (*RESOLUTIONS, "auto"), "auto"),
        points=params.integer(request, "points", points_default),
        with_imputed=params.flag(request, "imputed"),
    )


def series(request: Request) -> Response:
    """One metric of one participant over local days [start, end]; `points` is the row budget."""
    with request.app.state.db.connection() as conn:
        user = params.participant(conn, request.path_params["user_id"])
        wanted = _series_request(request, user, points_default=DEFAULT_POINTS)
        try:
            return Json(read_series(conn, user, wanted))
        except NoData as exc:
            raise params.NotFound(
                f"participant {user.user_id} has no {wanted.metric} data in {wanted.start} … {wanted.end}"
            ) from exc


def download(request: Request) -> Response:
    """A view's rows as `fitpipe export --tz local` writes them (CSV), or as its Parquet file."""
    fmt = request.path_params["format"]
    if fmt not in ("csv", "parquet"):
        raise params.NotFound(f"no download format {fmt[:20]!r}; use .csv or .parquet")
    with request.app.state.db.connection() as conn:
        user = params.participant(conn, request.path_params["user_id"])
        wanted = _series_request(request, user, points_default=DEFAULT_MAX_ROWS)
        typed = fmt == "parquet"
        try:
            prepared = prepared_request(conn, user, wanted, typed=typed)
        except NoData as exc:
            raise params.NotFound(str(exc)) from exc
        # Spooled: a view's file is usually small and stays in memory; a big one goes to disk.
        spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=8 << 20))  # noqa: SIM115 (closed by chunks())
        if typed:
            from fitpipe.output.parquet import write_parquet

            rows = write_parquet(conn, [(prepared.query, p) for _, p in prepared.parts], spool)
        else:
            rows = write_csv(conn, prepared, spool)
    if rows == 0:
        spool.close()
        raise params.NotFound(f"no {wanted.metric} rows at resolution {prepared.resolution} in the range")
    spool.seek(0)
    name = f"{wanted.metric}_{user.user_id}_{wanted.start}_{wanted.end}_{prepared.resolution}.{fmt}"

    def chunks() -> Iterator[bytes]:
        with spool:
            while block := spool.read(_CHUNK):
                yield block

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet",
        headers={"content-disposition": f'attachment; filename="{name}"', "x-fitpipe-rows": str(rows)},
    )


def pipeline_data(request: Request) -> Response:
    with request.app.state.db.connection() as conn:
        return Json(pipeline(conn))
