"""Every query of every Grafana dashboard runs against a real database, as Grafana would send it.

Grafana first replaces template variables ($participant, ${participant}, [[participant]], the
global $__interval, ...) and then the PostgreSQL data source's macros ($__timeFilter(col), ...).
Both are done here the same way, with each dashboard's own default time range and each variable's
default value (a query variable takes its first row, as Grafana does), at three panel intervals so
that every rollup level a panel can pick is read. Anything that still looks like a variable or a
macro afterwards fails the test, so a new macro has to be taught to this file.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support import ROOT

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
DATASOURCE_UID = "timescaledb"
# Grafana's $__interval for a panel: below an hour the panels read rollup_1min, below a day
# rollup_1h, above that rollup_1d.
INTERVALS = ("1m", "1h", "1d")
# Panels that must show something for the little data loaded below.
MUST_HAVE_ROWS = {
    ("fitpipe-participant-health", "Heart rate"),
    ("fitpipe-pipeline", "Run duration"),
    ("fitpipe-pipeline", "Last 20 runs"),
    ("fitpipe-adherence", "Adherence flags"),
}


# --------------------------------------------------------------------------------------------
# What Grafana does to a query before the database sees it


def parse_duration(text: str) -> dt.timedelta:
    """Grafana's interval syntax: 30s, 5m, 1h, 1d, 1w, 250ms."""
    match = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w)'?\s*", text)
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    return {
        "ms": dt.timedelta(milliseconds=n),
        "s": dt.timedelta(seconds=n),
        "m": dt.timedelta(minutes=n),
        "h": dt.timedelta(hours=n),
        "d": dt.timedelta(days=n),
        "w": dt.timedelta(weeks=n),
    }[unit]


def resolve_time(value: str) -> dt.datetime:
    """A dashboard time setting: an ISO instant, `now` or `now-<interval>`, evaluated now as Grafana does."""
    match = re.fullmatch(r"now(?:-(\w+))?", value)
    if match:
        # Rounded up to the second: RFC 3339 in the macros drops the fraction.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        return now - (parse_duration(match.group(1)) if match.group(1) else dt.timedelta(0))
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def global_variables(start: dt.datetime, end: dt.datetime, interval: str) -> dict[str, str]:
    seconds = parse_duration(interval).total_seconds()
    return {
        "__interval": interval,
        "__interval_ms": str(int(seconds * 1000)),
        "__from": str(int(start.timestamp() * 1000)),
        "__to": str(int(end.timestamp() * 1000)),
        "__range_s": str(int((end - start).total_seconds())),
        "__range_ms": str(int((end - start).total_seconds() * 1000)),
    }


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")


def replace_variables(sql: str, values: dict[str, str]) -> str:
    """Template variables as the SQL data sources interpolate a single value."""

    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        fmt = match.group(2) or match.group(4)
        if name not in values:
            return match.group(0)  # a macro, or unknown: left for the checks below
        value = values[name]
        if fmt in (None, "raw", "csv", "text"):
            # Grafana doubles quotes in a single value, so '$var' stays one literal.
            return value if fmt == "raw" else value.replace("'", "''")
        if fmt in ("sqlstring", "singlequote"):
            return "'" + value.replace("'", "''") + "'"
        raise AssertionError(f"variable format :{fmt} of ${name} is not emulated here")

    return _VARIABLE.sub(sub, sql)


# The PostgreSQL data source's macro syntax: no parentheses inside the arguments.
_MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")


def replace_macros(sql: str, start: dt.datetime, end: dt.datetime) -> str:
    """The macros of Grafana's PostgreSQL data source, with TimescaleDB enabled as provisioned."""
    first, last = f"'{rfc3339(start)}'", f"'{rfc3339(end)}'"

    def sub(match: re.Match) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")] if match.group(2).strip() else []
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN {first} AND {last}"
        if name == "__timeFrom":
            return first
        if name == "__timeTo":
            return last
        if name in ("__time", "__timeEpoch"):
            return f'{args[0]} AS "time"' if name == "__time" else f'extract(epoch from {args[0]}) AS "time"'
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = parse_duration(args[1]).total_seconds()
            group = f"time_bucket('{seconds:.3f}s',{args[0]})"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        if name in ("__unixEpochFrom", "__unixEpochTo"):
            return str(int((start if name.endswith("From") else end).timestamp()))
        raise AssertionError(f"macro ${name}() is not emulated by tests/test_dashboards.py; add it there")

    return _MACRO.sub(sub, sql)


def sql_code(sql: str) -> str:
    """The SQL with string literals, quoted identifiers, dollar quotes and comments blanked."""
    pattern = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$|--[^\n]*|/\*.*?\*/", re.S)
    return pattern.sub(" ", sql)


def leftovers(sql: str) -> list[str]:
    """Variables or macros nobody replaced: `$` then a letter, `_` or `{`, or `[[`, outside literals."""
    return re.findall(r"\$[A-Za-z_{][\w{}:]*|\[\[\w+", sql_code(sql))


def expand(sql: str, variables: dict[str, str], start: dt.datetime, end: dt.datetime, interval: str) -> str:
    values = {**global_variables(start, end, interval), **variables}
    expanded = replace_macros(replace_variables(sql, values), start, end)
    left = leftovers(expanded)
    assert not left, f"not replaced: {left}"
    return expanded


def test_expansion_matches_grafana_and_flags_what_it_does_not_know():
    start, end = dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    sql = (
        "SELECT $__timeGroupAlias(bucket, $__interval), '${who}' AS w FROM t "
        "WHERE user_id = [[who]] AND $__timeFilter(bucket) AND $__interval_ms > 0 AND x < $__timeTo()"
    )
    assert expand(sql, {"who": "7"}, start, end, "1h") == (
        "SELECT time_bucket('3600.000s',bucket) AS \"time\", '7' AS w FROM t WHERE user_id = 7 AND "
        "bucket BETWEEN '2024-01-01T00:00:00Z' AND '2024-02-01T00:00:00Z' AND 3600000 > 0 "
        "AND x < '2024-02-01T00:00:00Z'"
    )
    assert replace_variables("'$v'", {"v": "x' OR '1"}) == "'x'' OR ''1'"
    assert leftovers("SELECT $unknown, ${other}, [[third]] FROM t") == ["$unknown", "${other}", "[[third"]
    assert leftovers("SELECT '$in a literal', \"$col\", $$ $body $$ -- $comment\nFROM t") == []
    with pytest.raises(AssertionError, match="not emulated"):
        replace_macros("SELECT $__newMacro(x)", start, end)


# --------------------------------------------------------------------------------------------
# The dashboards


def load(path) -> dict:
    return json.loads(path.read_text())


def all_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows hold their panels


def queries():
    """(dashboard file, uid, panel title, refId, format, rawSql) of every SQL target."""
    for path in DASHBOARDS:
        board = load(path)
        for panel in all_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    yield (
                        path.name,
                        board["uid"],
                        panel.get("title", ""),
                        target.get("refId", "A"),
                        target.get("format", "time_series"),
                        target["rawSql"],
                    )


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    return query.get("rawSql", query.get("query", "")) if isinstance(query, dict) else query


def time_range(board: dict) -> tuple[dt.datetime, dt.datetime]:
    return resolve_time(board["time"]["from"]), resolve_time(board["time"]["to"])


QUERIES = list(queries())


def test_there_are_dashboards_with_queries():
    assert {p.name for p in DASHBOARDS} >= {"participant-health.json", "pipeline.json", "adherence.json"}
    assert {(uid, title) for _, uid, title, *_ in QUERIES} >= MUST_HAVE_ROWS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path):
    board = load(path)
    assert board.get("uid") and board.get("title"), path.name
    assert 36 <= board.get("schemaVersion", 0) <= 41, f"{path.name}: schemaVersion {board.get('schemaVersion')}"
    time_range(board)  # a time range this file understands
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert uids.count(board["uid"]) == 1, f"uid {board['uid']} is used by two dashboards"
    ids = [p["id"] for p in all_panels(board["panels"])]
    assert len(ids) == len(set(ids)), f"{board['title']}: panel ids repeat"
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            where = f"{board['title']} / {panel.get('title')}"
            assert target.get("rawQuery") and target.get("rawSql"), f"{where}: not a raw SQL target"
            assert target.get("format") in ("time_series", "table"), f"{where}: format {target.get('format')}"
            for source in (panel.get("datasource"), target.get("datasource")):
                if source is not None:
                    assert source.get("uid") == DATASOURCE_UID, f"{where}: data source {source}"


# --------------------------------------------------------------------------------------------
# Against the database


@pytest.fixture(scope="module")
def dashboard_db(database_url):
    """A little data in the session's database: 2 participants, 2 days, imputed gaps, the runs.

    Every table is emptied before and after, so neither other modules' data nor ours leaks across.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        ).fetchone()[0]
        empty = f"TRUNCATE {tables} RESTART IDENTITY CASCADE"
        conn.execute(empty)
        runner = CliRunner()
        for args in (
            ["seed-users", "--count", "2"],
            ["backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--workers", "2"],
            ["impute"],
        ):
            result = runner.invoke(app, ["--database-url", database_url, *args])
            assert result.exit_code == 0, f"fitpipe {' '.join(args)}: {result.output}"
        try:
            yield conn
        finally:
            conn.execute(empty)


def run(conn: psycopg.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    """Run as the read-only role Grafana logs in with, so a panel needing more than it may fails."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL ROLE fitpipe_readonly")
        conn.execute("SET LOCAL statement_timeout = '20s'")
        cur = conn.execute(sql)
        rows = cur.fetchall()
        columns = [c.name for c in cur.description or []]
    return columns, rows


@pytest.fixture(scope="module")
def variables(dashboard_db):
    """Per dashboard file: its variables' default values, query variables resolved in order."""
    resolved = {}
    for path in DASHBOARDS:
        board = load(path)
        start, end = time_range(board)
        values: dict[str, str] = {}
        for variable in board.get("templating", {}).get("list", []):
            name, kind = variable["name"], variable.get("type")
            if kind == "query":
                sql = expand(variable_query(variable), values, start, end, "1h")
                try:
                    columns, rows = run(dashboard_db, sql)
                except psycopg.Error as exc:
                    pytest.fail(f"{board['title']} / variable {name}: {exc}\n{sql}")
                assert rows, f"{board['title']} / variable {name}: the query returned nothing\n{sql}"
                pick = columns.index("__value") if "__value" in columns else 0
                values[name] = str(rows[0][pick])
            elif kind in ("textbox", "constant", "custom"):
                current = variable.get("current", {}).get("value")
                default = variable.get("query", "").split(",")[0].strip()
                values[name] = str(current if current not in (None, "") else default)
            elif kind not in ("interval", "datasource", "adhoc"):
                raise AssertionError(f"{board['title']}: variable type {kind} of ${name} is not emulated here")
        resolved[path.name] = values
    return resolved


@pytest.mark.parametrize(
    "dashboard, uid, panel, ref, fmt, sql",
    QUERIES,
    ids=[f"{q[0]}:{q[2]}:{q[3]}" for q in QUERIES],
)
def test_panel_query_runs(dashboard_db, variables, dashboard, uid, panel, ref, fmt, sql):
    board = load(DASHBOARD_DIR / dashboard)
    where = f"{board['title']} / {panel} ({ref})"
    start, end = time_range(board)
    for interval in INTERVALS:
        try:
            expanded = expand(sql, variables[dashboard], start, end, interval)
        except AssertionError as exc:
            pytest.fail(f"{where}: {exc}")
        try:
            columns, rows = run(dashboard_db, expanded)
        except psycopg.Error as exc:
            pytest.fail(f"{where} at $__interval={interval}: {type(exc).__name__}: {exc}\n{expanded}")
        if fmt == "time_series":
            assert "time" in columns, f"{where}: a time series query needs a column named time, got {columns}"
            times = [row[columns.index("time")] for row in rows]
            assert times == sorted(times), f"{where}: rows must be ordered by time"
        if (uid, panel) in MUST_HAVE_ROWS:
            assert rows, f"{where} at $__interval={interval}: no rows for the loaded data\n{expanded}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_variable_queries_run(variables, path):
    board = load(path)
    for variable in board.get("templating", {}).get("list", []):
        assert variable["name"] in variables[path.name], f"{board['title']}: variable {variable['name']} unresolved"


def test_heart_rate_keeps_measured_and_imputed_apart(dashboard_db, variables):
    """At 1-minute resolution a minute is either measured or imputed, and both kinds are there."""
    ((dashboard, _, _panel, _, _, sql),) = [
        q for q in QUERIES if q[1:3] == ("fitpipe-participant-health", "Heart rate")
    ]
    start, end = time_range(load(DASHBOARD_DIR / dashboard))
    columns, rows = run(dashboard_db, expand(sql, variables[dashboard], start, end, "1m"))
    measured, imputed = columns.index("measured"), columns.index("imputed")
    assert any(row[measured] is not None for row in rows)
    assert any(row[imputed] is not None for row in rows), "no imputed minutes shown (fitpipe impute ran)"
    assert not [row for row in rows if row[measured] is not None and row[imputed] is not None]


def test_heart_rate_draws_the_imputed_interval_as_a_band(dashboard_db, variables):
    """At 1-minute resolution every imputed minute has its 90% interval around it, and only those."""
    ((dashboard, _, title, _, _, sql),) = [q for q in QUERIES if q[1:3] == ("fitpipe-participant-health", "Heart rate")]
    board = load(DASHBOARD_DIR / dashboard)
    start, end = time_range(board)
    columns, rows = run(dashboard_db, expand(sql, variables[dashboard], start, end, "1m"))
    imputed, lower, upper = (columns.index(n) for n in ("imputed", "imputed 90% lower", "imputed 90% upper"))
    banded = [row for row in rows if row[imputed] is not None]
    assert banded, "no imputed minutes shown"
    assert all(row[lower] <= row[imputed] <= row[upper] for row in banded)
    assert all(row[lower] is None and row[upper] is None for row in rows if row[imputed] is None)
    (panel,) = [p for p in board["panels"] if p.get("title") == title]
    overrides = {o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]}
    assert {"id": "custom.fillBelowTo", "value": "imputed 90% lower"} in overrides["imputed 90% upper"]
