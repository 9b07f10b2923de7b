"""A local Google Health API v4 and Google OAuth server, for trying fitpipe without a Google project.

    python -m fitpipe.sources.google_health.standin --port 8765 --participants 3 --client-secrets client.json

Accounts participant-1..N serve the synthetic days of participants 1..N; the OAuth client's JSON is
written where --client-secrets says, for `fitpipe enroll --client-secrets`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable

from fitpipe.sources.google_health.standin.api import HealthApi
from fitpipe.sources.google_health.standin.days import synthetic_seed
from fitpipe.sources.google_health.standin.server import HealthApiServer


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fitpipe.sources.google_health.standin", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--participants", type=int, default=3, help="accounts participant-1..N (synthetic seeds 1..N)")
    parser.add_argument("--timezone", default="America/New_York")
    parser.add_argument("--client-secrets", required=True, help="write the OAuth client's JSON here")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay every data request's answer by this long (a simulated round trip)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.latency < 0:
        parser.error("--latency must be 0 or more seconds")
    server = HealthApiServer(HealthApi(latency=args.latency), port=args.port)
    for number in range(1, args.participants + 1):
        server.api.add_account(f"participant-{number}", timezone=args.timezone, seed=synthetic_seed(number))
    with open(args.client_secrets, "w") as file:
        json.dump(server.api.client_secrets(), file, indent=2)
    delayed = f", {args.latency * 1000:g} ms per data request" if args.latency else ""
    print(
        f"Google Health API stand-in on {server.url} with {args.participants} account(s){delayed}; "
        f"OAuth client in {args.client_secrets}. Ctrl-C stops it.",
        flush=True,
    )
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
