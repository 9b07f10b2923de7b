"""The app factory: routes, static files, middleware and the errors each becomes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fitpipe.config import mask_secrets
from fitpipe.errors import BadInput, FitpipeError, first_line
from fitpipe.web import api_v1, pages
from fitpipe.web.auth import Auth
from fitpipe.web.database import Busy, Database, PoolSettings
from fitpipe.web.middleware import RequireSecret, SecurityHeaders
from fitpipe.web.params import NotFound
from fitpipe.web.responses import error

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("fitpipe.serve")


def _bad_input(request: Request, exc: Exception) -> Response:
    return error(request, 400, str(exc))


def _not_found(request: Request, exc: Exception) -> Response:
    return error(request, 404, str(exc))


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(request, exc.status_code, "not found" if exc.status_code == 404 else str(exc.detail))


def _unavailable(request: Request, exc: Exception) -> Response:
    return error(request, 503, mask_secrets(str(exc)))


def _database(request: Request, exc: Exception) -> Response:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return error(request, 503, "the query took longer than the app's statement timeout; ask for a shorter range")
    log.warning("database error on %s: %s", request.url.path, mask_secrets(first_line(exc)))
    return error(request, 503, f"database error ({type(exc).__name__})")


def _unexpected(request: Request, exc: Exception) -> Response:
    # Logged for the operator; the browser gets one line, never a traceback.
    log.error("error on %s: %s", request.url.path, mask_secrets(first_line(exc)), exc_info=exc)
    return error(request, 500, "internal error; the server log has the details")


def create_app(url: str, *, auth: Auth | None = None, pool: PoolSettings | None = None) -> Starlette:
    """The ASGI app on the database at `url`; with `auth`, every request must carry its secret."""
    db = Database(url, pool or PoolSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
            db.close()

    routes = [
        Route("/", pages.cohort_page),
        Route("/participants/{user_id:int}", pages.participant_page),
        Route("/pipeline", pages.pipeline_page),
        Route("/api/v1/participants", api_v1.participants),
        Route("/api/v1/participants/{user_id:int}", api_v1.participant),
        Route("/api/v1/participants/{user_id:int}/series/{metric}", api_v1.series),
        Route("/api/v1/participants/{user_id:int}/export/{metric}.{format:str}", api_v1.download),
        Route("/api/v1/pipeline", api_v1.pipeline_data),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(RequireSecret, auth=auth)],
        exception_handlers={
            BadInput: _bad_input,
            NotFound: _not_found,
            HTTPException: _http,
            Busy: _unavailable,
            FitpipeError: _unavailable,
            psycopg.Error: _database,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.db = db
    return app
