"""The source contract, checked over every registered source, the way the Singer SDK's standard
tap tests check every stream: declarations, settings, parsers, one parsed day, the CLI hooks.

A fourth source, tests/tiny_source, is registered below with one line and nothing else: the
last test enrols a participant with it and backfills through the real CLI and database.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import importlib
import json
import secrets
import typing
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fitpipe.catalogue import BY_NAME, DayWindow
from fitpipe.cli import app
from fitpipe.errors import BadInput
from fitpipe.ingest.validate import ParsedDay, parse_day
from fitpipe.participants import User
from fitpipe.sources import register, registered, source_class
from fitpipe.sources.contract import CredentialKind, Fetch, RequestBudget, Source
from support.cli import fitpipe, one_error_line
from support.sources import fetch_now
from tiny_source.source import TinySource

register(TinySource)

SOURCES = registered()
BY_TABLE = {m.table: m for m in BY_NAME.values()}
DAY = dt.date(2024, 3, 12)


def declared(name: str) -> type[Source]:
    return source_class(name)


def settings_defaults(cls: type[Source]) -> dict[str, typing.Any]:
    """The settings dataclass's own defaults, field by field."""
    defaults = {}
    for f in dataclasses.fields(cls.settings):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def wrong_value(hint: typing.Any) -> typing.Any:
    """A JSON value none of the types a setting allows accepts (check_settings takes an int for a float)."""
    allowed = {typing.get_origin(t) or t for t in (typing.get_args(hint) or (hint,))}
    for candidate in (["a", "list"], "text", {"a": 1}, 1.5):
        if not isinstance(candidate, tuple(allowed)):
            return candidate
    raise AssertionError(f"no wrong value for {hint}")


# --- declarations --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_declarations(name):
    cls = declared(name)
    assert cls.name == name
    assert cls.credential_kind in typing.get_args(CredentialKind)
    assert isinstance(cls.settle_days, int) and cls.settle_days >= 0
    assert cls.request_budget is None or isinstance(cls.request_budget, RequestBudget)
    assert cls.produces, f"{name} declares no output"
    assert len(set(cls.produces)) == len(cls.produces), f"{name} lists a metric twice"
    unknown = [metric for metric in cls.produces if metric not in BY_NAME]
    assert not unknown, f"{name} produces metrics the catalogue does not know: {unknown}"


@pytest.mark.parametrize("name", SOURCES)
def test_settings_schema_and_defaults_pass_its_own_check(name):
    cls = declared(name)
    assert dataclasses.is_dataclass(cls.settings) and isinstance(cls.settings, type)
    defaults = settings_defaults(cls)
    assert cls.check_settings(defaults) == defaults
    stored = cls.default_settings(7)
    assert isinstance(stored, dict)
    assert cls.check_settings(stored) == stored
    # What `participants add` stores is JSON (participant_sources.settings is jsonb).
    assert json.loads(json.dumps(stored)) == stored


@pytest.mark.parametrize("name", SOURCES)
def test_check_settings_rejects_an_unknown_key_and_a_wrongly_typed_value(name):
    cls = declared(name)
    with pytest.raises(BadInput, match="bogus"):
        cls.check_settings({"bogus": 1})
    hints = typing.get_type_hints(cls.settings)
    for f in dataclasses.fields(cls.settings):
        value = wrong_value(hints[f.name])
        with pytest.raises(BadInput, match=f.name):
            cls.check_settings({f.name: value})


@pytest.mark.parametrize("name", SOURCES)
def test_parsers_are_a_non_empty_sequence_of_callables(name):
    parsers = declared(name).parsers()
    assert isinstance(parsers, typing.Sequence) and not isinstance(parsers, str)
    assert len(parsers) > 0
    assert all(callable(parser) for parser in parsers)


# --- one day fetched and parsed, for the sources that can make one here ------------------------------


def participant_for(cls: type[Source], user_id: int = 3, **settings: typing.Any) -> User:
    return User(
        user_id,
        f"participant-{user_id:04d}",
        "Europe/Berlin",
        cls.name,
        DAY - dt.timedelta(days=10),
        settings=cls.default_settings(user_id) | settings,
        zones=((DAY - dt.timedelta(days=10), "Europe/Berlin"),),
    )


@pytest.fixture(scope="module")
def health_api():
    pytest.importorskip("google.devicesandservices.health_v4", reason="needs the google-health extra")
    from fitpipe.sources.google_health.standin import HealthApiServer

    with HealthApiServer() as server:
        yield server


def grant_from(api, account: str) -> str:
    """A stored grant for the account, by the stand-in's consent and token endpoints (PKCE), as
    `fitpipe enroll` would get it without the browser."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "http://127.0.0.1:9/"
    location = api.authorize(
        {
            "client_id": api.client_id,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "access_type": "offline",
            "login_hint": account,
        }
    )
    code = parse_qs(urlsplit(location).query)["code"][0]
    status, answer = api.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect,
            "client_id": api.client_id,
            "client_secret": api.client_secret,
        }
    )
    assert status == 200, answer
    return json.dumps(
        {
            "refresh_token": answer["refresh_token"],
            "client_id": api.client_id,
            "client_secret": api.client_secret,
            "token_uri": f"{api.base_url}/token",
        }
    )


def google_health_day(request) -> tuple[User, Fetch, Source]:
    server = request.getfixturevalue("health_api")
    from fitpipe.sources.google_health.standin import synthetic_seed

    server.api.add_account("contract", timezone="Europe/Berlin", seed=synthetic_seed(3), heart_rate_every=30)
    grant = grant_from(server.api, "contract")
    cls = declared("google-health")
    fetch = fetch_now()
    participant = participant_for(cls, api_url=server.url)
    return participant, Fetch(now=fetch.now, budget=fetch.budget, secret=lambda: grant), cls()


def takeout_day(request) -> tuple[User, Fetch, Source]:
    """A small archive in the folder layout (Global Export Data JSON), indexed into a stage as
    `fitpipe import` does; the import's own source instance hands its days to the loader."""
    from fitpipe.sources.takeout.archive import Archive
    from fitpipe.sources.takeout.index import Indexer, Stage

    root = request.getfixturevalue("tmp_path") / "archive"
    export = root / "Takeout" / "Fitbit" / "Global Export Data"
    export.mkdir(parents=True)
    beats = [
        {"dateTime": f"{DAY:%m/%d/%y} {hour:02d}:{minute:02d}:05", "value": {"bpm": 60 + hour, "confidence": 2}}
        for hour in range(24)
        for minute in range(0, 60, 15)
    ]
    (export / f"heart_rate-{DAY}.json").write_text(json.dumps(beats))
    resting = [{"dateTime": f"{DAY:%m/%d/%y} 00:00:00", "value": {"date": f"{DAY:%m/%d/%y}", "value": 57.5}}]
    (export / f"resting_heart_rate-{DAY}.json").write_text(json.dumps(resting))
    participant = participant_for(declared("takeout"))
    stage = root.parent / "stage"
    stage.mkdir()
    archive = Archive(root)
    try:
        Indexer(archive, participant, Stage(stage)).run()
    finally:
        archive.close()
    return participant, fetch_now(), declared("takeout")(Stage(stage))


# Sources whose day needs more than their default settings: how to make one here.
DAY_MAKERS: dict[str, Callable[[typing.Any], tuple[User, Fetch, Source]]] = {
    "google-health": google_health_day,
    "takeout": takeout_day,
}


def fetch_one_day(name: str, request) -> tuple[User, typing.Mapping[str, typing.Any]]:
    cls = declared(name)
    if name in DAY_MAKERS:
        participant, fetch, source = DAY_MAKERS[name](request)
    elif cls.credential_kind == "none":
        participant, fetch, source = participant_for(cls), fetch_now(), cls()
    else:
        pytest.skip(f"{name} needs a {cls.credential_kind} credential this suite cannot make")
    try:
        cls.prepare_workers()
    except BadInput as exc:  # an extra that is not installed
        pytest.skip(str(exc))
    payloads = source.fetch_day(participant, DAY, fetch)
    assert isinstance(payloads, typing.Mapping) and payloads
    return participant, payloads


def assert_rows_valid(parsed: ParsedDay, participant: User) -> None:
    ctx = participant.day_context(DAY)
    for table, rows in parsed.rows.items():
        metric = BY_TABLE[table]
        assert rows.metric is metric
        assert list(rows.columns) == [c.name for c in metric.columns], table
        lengths = {len(array) for array in rows.columns.values()}
        assert lengths == {len(rows)} and len(rows) > 0, table
        assert (rows.columns["user_id"] == participant.user_id).all()
        times = rows.columns[metric.time_column]
        assert not np.isnat(times).any(), table
        if metric.window is DayWindow.DATE:
            assert (times == np.datetime64(DAY, "D")).all(), table
        else:
            lo, hi = ctx.window(metric)
            assert ((times >= lo) & (times < hi)).all(), f"{table} has rows outside local day {DAY}"
        for column in metric.values:
            values = rows.columns[column.name]
            if column.allowed:
                assert set(values) <= set(column.allowed), column.name
            if column.low is None or values.dtype.kind not in "iuf":
                continue
            present = values[~np.isnan(values)] if values.dtype.kind == "f" else values
            assert ((present >= column.low) & (present <= column.high)).all(), f"{table}.{column.name} out of range"


@pytest.mark.parametrize("name", SOURCES)
def test_one_day_parses_into_the_tables_it_declares(name, request):
    cls = declared(name)
    participant, payloads = fetch_one_day(name, request)
    parsed = parse_day(payloads, participant.day_context(DAY), cls.parsers())
    assert parsed.row_count > 0, f"{name}'s day parsed to no rows: {parsed.quarantined[:3]}"
    # A generated day is clean: its own parsers refuse almost none of it.
    refused = len(parsed.quarantined)
    assert refused <= 0.01 * (parsed.row_count + refused), f"{name} quarantined {refused}: {parsed.quarantined[:3]}"
    written = {BY_TABLE[table].name for table in parsed.rows}
    undeclared = written - set(cls.produces)
    assert not undeclared, f"{name} wrote tables it does not declare: {sorted(undeclared)}"
    assert_rows_valid(parsed, participant)


# --- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SOURCES)
def test_participants_add_refuses_a_setting_the_source_does_not_have(name, cli, db):
    result = cli(
        "participants", "add", "9", "--source", name, "--timezone", "UTC", "--study-start", "2024-01-01",
        "--setting", "bogus=1",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    one_error_line(result, "bogus", code=2)
    assert db.execute("SELECT count(*) FROM users WHERE user_id = 9").fetchone()[0] == 0


@pytest.mark.parametrize("name", SOURCES)
def test_participants_add_refuses_a_wrongly_typed_setting(name, cli, db):
    cls = declared(name)
    hints = typing.get_type_hints(cls.settings)
    fields = dataclasses.fields(cls.settings)
    if not fields:
        pytest.skip(f"{name} has no settings")
    key = fields[0].name
    result = cli(
        "participants", "add", "9", "--source", name, "--timezone", "UTC", "--study-start", "2024-01-01",
        "--setting", f"{key}={json.dumps(wrong_value(hints[key]))}",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    one_error_line(result, key, code=2)


def command_names(typer_app: typer.Typer) -> list[str]:
    return [info.name or info.callback.__name__.replace("_", "-") for info in typer_app.registered_commands]


CORE_COMMANDS = {"init-db", "seed-users", "ingest", "backfill", "status", "export", "participants", "aggregate"}


@pytest.mark.parametrize("name", SOURCES)
def test_declared_commands_name_typer_commands_and_leave_the_core_alone(name):
    commands = declared(name).commands
    assert not set(commands) & CORE_COMMANDS
    for command, target in commands.items():
        module, _, function = target.partition(":")
        assert module.startswith(declared(name).__module__.rpartition(".")[0]), (
            "a source's commands live in its package"
        )
        probe = typer.Typer()
        probe.command(command)(getattr(importlib.import_module(module), function))
        help_text = CliRunner().invoke(probe, ["--help"])
        assert help_text.exit_code == 0 and "Example:" in help_text.stdout


def test_the_cli_has_each_sources_commands_once():
    names = command_names(app)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ") and line.split()[1:]}
    assert {"import", "enroll", "ingest", "backfill", "status"} <= listed


# --- the tiny source, end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_tiny_source_end_to_end(database_url, db):
    first, last = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
    fitpipe(
        database_url, "participants", "add", "5", "--source", "tiny", "--timezone", "Asia/Kolkata",
        "--study-start", first.isoformat(), "--setting", "every_minutes=20",
    )  # fmt: skip
    fitpipe(database_url, "backfill", "--start", first.isoformat(), "--end", last.isoformat(), "--workers", "1")

    # What the source itself says those days hold, fetched and parsed here.
    participant = User(5, "p", "Asia/Kolkata", "tiny", first, settings={"resting_bpm": 58, "every_minutes": 20})
    expected: dict[str, int] = {}
    for day in (first, last):
        payloads = TinySource().fetch_day(participant, day, fetch_now())
        parsed = parse_day(payloads, participant.day_context(day), TinySource.parsers())
        for table, rows in parsed.rows.items():
            expected[table] = expected.get(table, 0) + len(rows)
    assert set(expected) == {BY_NAME[m].table for m in TinySource.produces}
    for table, count in expected.items():
        loaded = db.execute(f"SELECT count(*) FROM {table} WHERE user_id = 5").fetchone()[0]
        assert loaded == count, table
    lowest = db.execute("SELECT min(bpm) FROM heart_rate WHERE user_id = 5").fetchone()[0]
    assert lowest >= 58

    report = json.loads(fitpipe(database_url, "status", "--json").stdout)
    (user,) = [u for u in report["users"] if u["user_id"] == 5]
    assert user["source"] == "tiny"
    assert user["states"]["complete"] == 2
    assert {metric: user["rows"][metric] for metric in TinySource.produces} == {
        BY_TABLE[table].name: count for table, count in expected.items()
    }
