"""Google Health API source: requests per participant-day, and a nightly run's wall time against
what the rate limits and the network latency allow.

    .venv/bin/python benchmarks/google_health.py [--participants 6] [--days 2] [--workers N]
        [--latency 0.1] [--heart-rate-every 1] [--in-flight K] [--cold-pages] [--keep]

Goal (issue 10): the nightly run reaches at least 0.9 of the throughput that the per-user cap
(300 requests per minute) and a 100 ms latency per request allow.

How, in one run and one database:
1. the local Google Health API (fitpipe.sources.google_health.standin) in this process on a free loopback
   port, every data request answered --latency seconds after it arrived (the stand-in's serving
   time inside them, as Google's is), in protobuf as fitpipe asks (`$alt=proto`), its quota at Google's 300
   requests per minute per user (over it, it answers 429); fitpipe's budget is its default,
   the same 300 per minute. One account per participant, synthetic seeds 1..N, America/New_York,
   heart rate at the device's 1-second rate (--heart-rate-every thins it);
2. N google-health participants, each given a grant obtained through the server's OAuth
   endpoints (PKCE, offline access), stored with `fitpipe secrets set`;
3. warm-up: the server generates the accounts' days (wearipedia) before the clock starts, as
   Google has the data before fitpipe asks for it, and builds every page the timed run will ask
   for in an untimed run of the same ingest without latency (the tables are emptied after it;
   build_pages says why, --cold-pages skips it);
4. timed: `FITPIPE_TODAY=... fitpipe ingest --days D --workers W --no-refresh --quiet` in a
   subprocess: D new days per participant (wall time includes interpreter start and the token
   refreshes). The server counts every data request, per participant.
5. the bound, from the requests counted in 4: each participant's requests are sequential (its
   days run one at a time), so r of them take at least r x latency, and the per-user cap adds a
   wait of a minute for each further 300 (floor((r-1)/300) x 60 s); at most K requests are in
   flight at once (K = W workers, or --in-flight, FITPIPE_HEALTH_MAX_IN_FLIGHT, when it is fewer),
   so all R take at least R x latency / K. The bound is the larger; the
   ratio is bound / measured wall time (= measured throughput / allowed throughput).
CPU seconds of the fitpipe processes (the CLI and its workers) and of the stand-in server are
printed beside it, since with 1-second heart rate they, not the network, are what a run waits for.
Then the arithmetic for 1,000 participants on a night (a new day plus the unsettled ones).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

START = dt.date(2024, 3, 1)
ZONE = "America/New_York"
CAP, WINDOW = 300, 60.0  # Google's per-user quota: requests per seconds
NIGHTLY_DAYS = 4  # a night fetches the new day and the 3 still inside the settle window again
COHORT = 1_000


def chain_seconds(requests: int, latency: float) -> float:
    """The least time one participant's `requests` sequential requests take under the per-user cap."""
    if requests <= 0:
        return 0.0
    return (requests - 1) // CAP * WINDOW + ((requests - 1) % CAP + 1) * latency


def grant_for(api, account: str) -> str:
    """The grant `fitpipe enroll` stores, through the server's OAuth endpoints without a browser."""
    import requests
    from google_auth_oauthlib.flow import Flow

    from fitpipe.sources.google_health.consent import SCOPES

    flow = Flow.from_client_config(api.client_secrets(), scopes=list(SCOPES), redirect_uri="http://127.0.0.1:9/")
    url, _ = flow.authorization_url(access_type="offline", login_hint=account)
    redirect = requests.get(url, allow_redirects=False, timeout=30).headers["Location"]
    flow.fetch_token(authorization_response=redirect.replace("http", "https", 1))
    return flow.credentials.to_json(strip=["token", "expiry"])


def enrol(url: str, api, user_id: int, account: str) -> None:
    c.fitpipe(
        url,
        "participants",
        "add",
        str(user_id),
        "--source",
        "google-health",
        "--timezone",
        ZONE,
        "--study-start",
        str(START),
    )
    proc = subprocess.run(
        [c.interpreter(), "-m", "fitpipe.cli", "--database-url", url, "secrets", "set", "--user", str(user_id)],
        input=grant_for(api, account),
        capture_output=True,
        text=True,
        env=c.cli_env(),
        cwd=c.ROOT,
    )
    if proc.returncode != 0:
        sys.exit(f"`fitpipe secrets set` failed:\n{proc.stdout}{proc.stderr}")


def warm_up(api, account: str, days: int) -> None:
    """Have the server generate every day the queries of days START..START+days-1 touch (the
    night's sleep ends the next morning, daily HRV is dated the next day)."""
    from fitpipe.sources.google_health.standin import parse_filter

    last = START + dt.timedelta(days=days + 1)
    api.points(
        account,
        "steps",
        parse_filter(
            f'steps.interval.start_time >= "{START}T12:00:00Z" AND steps.interval.start_time < "{last}T12:00:00Z"'
        ),
    )


def build_pages(api, url: str, days: int, workers: int) -> None:
    """An untimed run of the same ingest, without latency, then the tables emptied.

    The stand-in builds a page the first time it is asked for it, in Python: about 30 ms of CPU
    for a page of 10,000 heart-rate points. Google's servers do that on their own machines,
    inside the round trip; the stand-in would do it on the 2 cores the measured run has, and
    hold its GIL while its other threads wait to answer. With every page built beforehand, the
    timed run's requests cost the stand-in only the HTTP exchange. --cold-pages skips this.
    """
    latency, api.latency = api.latency, 0.0
    try:
        c.fitpipe(url, "ingest", "--days", str(days), "--workers", str(workers), "--no-refresh", "--quiet")
    finally:
        api.latency = latency
    with c.psycopg.connect(url) as conn:
        c.truncate_data(conn)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--participants", type=int, default=6)
    p.add_argument("--days", type=int, default=2, help="new days per participant in the timed run")
    p.add_argument("--workers", type=int, help="default: one per participant")
    p.add_argument("--latency", type=float, default=0.1, help="seconds per data request (default 0.1)")
    p.add_argument("--heart-rate-every", type=int, default=1, help="serve every Nth heart-rate second (default 1)")
    p.add_argument(
        "--cold-pages",
        action="store_true",
        help="let the stand-in build each page when first asked, inside the timed run",
    )
    p.add_argument(
        "--in-flight",
        type=int,
        help="FITPIPE_HEALTH_MAX_IN_FLIGHT: requests in flight across the workers (default: one per worker)",
    )
    args = p.parse_args()
    workers = min(args.workers or args.participants, args.participants)
    # The bound's concurrency: what the run may have in flight at once.
    slots = min(args.in_flight or workers, workers)
    if args.in_flight:
        os.environ["FITPIPE_HEALTH_MAX_IN_FLIGHT"] = str(args.in_flight)

    from fitpipe.secrets import new_key
    from fitpipe.sources.google_health.standin import HealthApi, HealthApiServer, synthetic_seed

    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # http, but only to 127.0.0.1
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    api = HealthApi(quota=(CAP, WINDOW), latency=args.latency)
    accounts = {n: f"participant-{n}" for n in range(1, args.participants + 1)}
    with (
        tempfile.TemporaryDirectory() as folder,
        HealthApiServer(api) as server,
        c.bench_database("google_health", args.keep) as url,
    ):
        secrets_file = Path(folder) / "client_secret.json"
        secrets_file.write_text(json.dumps(api.client_secrets()))
        os.environ.update(
            FITPIPE_SECRET_KEY=new_key(),
            FITPIPE_HEALTH_API_URL=server.url,
            FITPIPE_GOOGLE_CLIENT_SECRETS=str(secrets_file),
        )
        for user_id, account in accounts.items():
            api.add_account(
                account, timezone=ZONE, seed=synthetic_seed(user_id), heart_rate_every=args.heart_rate_every
            )
            enrol(url, api, user_id, account)
        with c.Timer() as warm:
            for account in accounts.values():
                warm_up(api, account, args.days)
        print(
            f"stand-in generated {args.participants} x {args.days + 3} days in {warm.seconds:.0f} s (not timed)",
            flush=True,
        )
        os.environ["FITPIPE_TODAY"] = str(START + dt.timedelta(days=args.days))
        if not args.cold_pages:
            with c.Timer() as pages:
                build_pages(api, url, args.days, workers)
            print(
                f"stand-in built every page in an untimed run ({pages.seconds:.0f} s, no latency), then the tables "
                f"were emptied",
                flush=True,
            )
        with api.lock:
            api.requests.clear()
            api.answer_seconds.clear()
        cpu_children, cpu_self = children_cpu(), time.process_time()
        with c.Timer() as run:
            c.fitpipe(url, "ingest", "--days", str(args.days), "--workers", str(workers), "--no-refresh", "--quiet")
        cpu_fitpipe, cpu_server = children_cpu() - cpu_children, time.process_time() - cpu_self
        with c.psycopg.connect(url) as conn:
            states = dict(conn.execute("SELECT state, count(*) FROM ingested_days GROUP BY 1").fetchall())
            rows = conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM ingested_days").fetchone()[0]
        with api.lock:
            requests = list(api.requests)
        per_account = {a: sum(1 for r in requests if r[0] == a) for a in accounts.values()}
        peak_window = max(api.requests_per_window(a, WINDOW) for a in accounts.values())
        refused = sum(1 for r in requests if r[3] == 429)
        answered = sorted(api.answer_seconds)

    participant_days = args.participants * args.days
    loaded = states.get("provisional", 0) + states.get("complete", 0)
    if loaded != participant_days:
        sys.exit(f"expected {participant_days} participant-days loaded, the ledger says {states}")
    total = len(requests)
    per_day = total / participant_days
    chains = max(chain_seconds(r, args.latency) for r in per_account.values())
    spread = total * args.latency / slots
    bound = max(chains, spread)
    ratio = bound / run.seconds
    print(
        c.table(
            ["run", "participant-days", "requests", "req/participant-day", "rows", "wall s", "req/s", "x allowed"],
            [
                [
                    "allowed by latency + per-user cap (baseline)",
                    participant_days,
                    total,
                    per_day,
                    "-",
                    bound,
                    total / bound,
                    1.0,
                ],
                [
                    f"fitpipe ingest --workers {workers}" + (f", {slots} in flight" if args.in_flight else ""),
                    participant_days,
                    total,
                    per_day,
                    rows,
                    run.seconds,
                    total / run.seconds,
                    ratio,
                ],
            ],
        )
    )
    print(
        f"bound = max(longest participant {max(per_account.values())} req x {args.latency:g} s (+ 60 s per 300) "
        f"= {chains:.1f} s, {total} req x {args.latency:g} s / {slots} in flight = {spread:.1f} s) = {bound:.1f} s"
    )
    print(f"throughput / allowed: {ratio:.2f} (goal >= 0.9)")
    print(
        f"per-user cap: at most {peak_window} requests of one participant in any {WINDOW:.0f} s (cap {CAP}); "
        f"{refused} answered 429"
    )
    print(
        f"stand-in answer time per request (arrival to last byte sent): median "
        f"{answered[len(answered) // 2] * 1000:.0f} ms, p95 {answered[int(0.95 * (len(answered) - 1))] * 1000:.0f} ms; "
        f"wall per request per slot: {run.seconds * slots / total * 1000:.0f} ms"
    )
    print(
        f"CPU: fitpipe (CLI + workers) {cpu_fitpipe:.1f} s = {cpu_fitpipe / participant_days:.1f} s per "
        f"participant-day; stand-in server {cpu_server:.1f} s; {os.cpu_count()} cores, so CPU alone needs "
        f">= {(cpu_fitpipe + cpu_server) / (os.cpu_count() or 1):.1f} s of the {run.seconds:.1f} s"
    )

    # 1,000 participants, one night: the new day plus the NIGHTLY_DAYS - 1 still settling, fetched again.
    nightly = COHORT * NIGHTLY_DAYS
    cohort_requests = nightly * per_day
    print(
        f"\n{COHORT:,} participants, one night ({NIGHTLY_DAYS} days each: the new one and 3 inside the settle "
        f"window), {per_day:.1f} requests per participant-day:"
    )
    print(
        f"  requests: {COHORT:,} x {NIGHTLY_DAYS} x {per_day:.1f} = {cohort_requests:,.0f}; per participant "
        f"{NIGHTLY_DAYS * per_day:.0f}, under the cap of {CAP} a minute, so the cap adds no wait"
    )
    for w in (8, 32):
        print(
            f"  latency with {w} workers: {cohort_requests:,.0f} x {args.latency:g} s / {w} = "
            f"{cohort_requests * args.latency / w / 60:.1f} min"
        )
    cpu_day = cpu_fitpipe / participant_days
    for cores in (8, 32):
        print(
            f"  fitpipe CPU on {cores} cores: {nightly:,} x {cpu_day:.1f} s / {cores} = "
            f"{nightly * cpu_day / cores / 60:.1f} min"
        )
    print(
        f"  so with 8 workers on 8 cores a night takes at least "
        f"max({cohort_requests * args.latency / 8 / 60:.1f}, {nightly * cpu_day / 8 / 60:.1f}) min: "
        f"{'CPU' if nightly * cpu_day > cohort_requests * args.latency else 'the network'} bounds it"
    )


if __name__ == "__main__":
    main()
