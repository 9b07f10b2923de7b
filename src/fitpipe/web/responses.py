"""How the app answers: JSON with dates as ISO text, HTML from autoescaped templates, and errors
as a JSON body under /api/ or a page elsewhere; never a traceback."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("fitpipe.web", "templates"),
    autoescape=True,  # every value from the database is text in the page, never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(content: Any) -> str:
    return json.dumps(content, default=_plain, separators=(",", ":"), allow_nan=False)


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(request_path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)


def error(request: Request, status_code: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return Json({"error": message, "status": status_code}, status_code=status_code)
    return page(request, "error.html", status_code=status_code, status=status_code, message=message, title="Error")
