"""`fitpipe serve`: check where it may listen, then run the app on uvicorn. Imports the whole web
extra at once, so a missing piece is one clear line from the CLI, not a traceback later."""

from __future__ import annotations

import sys

import uvicorn

from fitpipe.errors import BadInput
from fitpipe.web.app import create_app
from fitpipe.web.auth import auth_from_environment, check_bind, is_loopback
from fitpipe.web.database import PoolSettings


def serve(url: str, host: str, port: int, *, pool: PoolSettings, log_level: str = "info") -> None:
    if not 1 <= port <= 65535:
        raise BadInput(f"--port must be between 1 and 65535, got {port}")
    if not 1 <= pool.max_connections <= 64:
        raise BadInput("--pool-size must be between 1 and 64")
    if not 0.1 <= pool.statement_timeout_s <= 3600:
        raise BadInput("--statement-timeout must be between 0.1 and 3600 seconds")
    auth = auth_from_environment()
    check_bind(host, auth)
    app = create_app(url, auth=auth, pool=pool)
    app.state.db.check()
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(
        f"fitpipe serve: http://{shown}:{port}/ ({'secret required' if auth else 'no authentication'}"
        f"{', loopback only' if is_loopback(host) else ''}); Ctrl-C stops it\n"
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False)
