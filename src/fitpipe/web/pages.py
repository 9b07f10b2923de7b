"""The HTML pages: cohort, participant, pipeline."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from fitpipe.catalogue import METRICS
from fitpipe.errors import BadInput
from fitpipe.web import params
from fitpipe.web.charts import CHARTS, STAGE_LEVELS
from fitpipe.web.cohort import SORT_KEYS, cohort
from fitpipe.web.pipeline_view import pipeline
from fitpipe.web.responses import dumps, page

DEFAULT_VIEW_DAYS = 7


def cohort_page(request: Request) -> Response:
    sort = params.choice(request, "sort", SORT_KEYS, "worst")
    with request.app.state.db.connection() as conn:
        view = cohort(conn, params.day(request, "as_of"), sort)
    return page(request, "cohort.html", title="Cohort", cohort=view, sort=sort)


def participant_page(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    with request.app.state.db.connection() as conn:
        user = params.participant(conn, user_id)
        last_day = conn.execute(
            "SELECT max(day) FROM ingested_days WHERE user_id = %s AND state <> 'deferred'", (user_id,)
        ).fetchone()[0]
    end = params.day_or(request, "end", last_day or user.study_start)
    start = params.day_or(request, "start", max(user.study_start, end - dt.timedelta(days=DEFAULT_VIEW_DAYS - 1)))
    if end < start:
        raise BadInput(f"end {end} is before start {start}")
    zones = list(user.zones) or [(user.study_start, user.timezone)]
    config = {
        "participant": user.user_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "study_start": user.study_start.isoformat(),
        "last_day": (last_day or user.study_start).isoformat(),
        # Where each zone of the history starts, as an instant, for the time axis.
        "zones": [{"from": user.day_start(first).timestamp(), "zone": zone} for first, zone in zones],
        "charts": CHARTS,
        "imputable": [m.name for m in METRICS if m.imputable],
        "stage_levels": STAGE_LEVELS,
    }
    return page(
        request,
        "participant.html",
        title=f"Participant {user.user_id}",
        user=user,
        zones=zones,
        last_day=last_day,
        start=start,
        end=end,
        charts=CHARTS,
        config_json=dumps(config),
    )


def pipeline_page(request: Request) -> Response:
    with request.app.state.db.connection() as conn:
        view = pipeline(conn)
    return page(request, "pipeline.html", title="Pipeline", view=view)
