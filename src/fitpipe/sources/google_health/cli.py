"""`fitpipe enroll`: the Google Health source's own command. Parses flags, runs the consent flow
(fitpipe.sources.google_health.consent), renders."""

from __future__ import annotations

import sys

import typer

from fitpipe.cli_support import console, database, handles_errors, parse_day


@handles_errors
def enroll(
    user_id: int = typer.Option(..., "--user", min=1, help="Participant id (new, or enrolled with google-health)."),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the consent URL and wait, for a headless server."
    ),
    client_secrets: str | None = typer.Option(
        None,
        "--client-secrets",
        envvar="FITPIPE_GOOGLE_CLIENT_SECRETS",
        show_envvar=True,
        help="The OAuth client's JSON (Desktop app) from the Google Cloud console.",
    ),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA zone; required for a new participant."),
    study_start: str | None = typer.Option(None, "--study-start", help="First local day, YYYY-MM-DD. Default: today."),
    name: str | None = typer.Option(None, "--name", help="Label. Default: participant-NNNN."),
) -> None:
    """Enrol a participant with the Google Health API (source google-health), or renew their consent.

    Runs Google's installed-app consent flow (PKCE, a loopback redirect on 127.0.0.1, offline
    access, read-only scopes for what fitpipe stores) and stores the refresh token encrypted
    (FITPIPE_SECRET_KEY). A participant marked needs_reconsent is back to ok, and their deferred
    days are fetched by the next ingest. FITPIPE_HEALTH_API_URL points ingest at another endpoint.

    Example: fitpipe enroll --user 7 --timezone Europe/Berlin --study-start 2024-03-01 --no-browser
    """
    from fitpipe.secrets import Keyring
    from fitpipe.sources.google_health import require_google_libraries
    from fitpipe.sources.google_health.consent import enroll_participant

    require_google_libraries()

    keyring = Keyring.from_environment()
    start = parse_day(study_start, "--study-start")

    def announce(message: str) -> None:
        typer.echo(message)
        sys.stdout.flush()

    with database() as conn:
        created = enroll_participant(
            conn,
            keyring,
            user_id,
            client_secrets=client_secrets,
            open_browser=not no_browser,
            announce=announce,
            timezone=timezone,
            study_start=start,
            display_name=name,
        )
    console().print(
        f"participant {user_id} {'enrolled' if created else 're-consented'} with google-health; "
        f"consent stored encrypted (key {keyring.primary_id})"
    )
