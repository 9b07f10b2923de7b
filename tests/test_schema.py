"""The catalogue (src/fitpipe/catalogue.py) and the migrated database describe the same tables.

Runs against the session test database, which init-db built from migrations/, so a change to
either side without the other fails here.
"""

from __future__ import annotations

import psycopg
import pytest

from fitpipe.catalogue import METRICS

# Catalogue spellings -> what format_type() prints.
PG_TYPE = {
    "integer": "integer",
    "int4": "integer",
    "smallint": "smallint",
    "int2": "smallint",
    "bigint": "bigint",
    "int8": "bigint",
    "real": "real",
    "float4": "real",
    "boolean": "boolean",
    "bool": "boolean",
    "text": "text",
    "date": "date",
    "timestamptz": "timestamp with time zone",
    "timestamp with time zone": "timestamp with time zone",
}

# Relations users query: tables (plain and partitioned), views, materialized views, foreign tables.
RELKINDS = ("r", "p", "v", "m", "f")

# Objects that belong to an extension (TimescaleDB's own) are not fitpipe's to document.
NOT_EXTENSION_MEMBER = """
    NOT EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = %(catalog)s::regclass AND d.objid = {oid} AND d.deptype = 'e')
"""


@pytest.fixture(scope="module")
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def metric_ids():
    return [m.name for m in METRICS]


def columns_of(conn, table: str) -> list[tuple[str, str, bool]]:
    return conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
        FROM pg_attribute a
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (f"public.{table}",),
    ).fetchall()


def primary_key_of(conn, table: str) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            """
            SELECT a.attname
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s::regclass AND i.indisprimary
            ORDER BY k.ord
            """,
            (f"public.{table}",),
        )
    ]


def test_catalogue_is_consistent():
    names = [m.name for m in METRICS]
    tables = [m.table for m in METRICS]
    assert len(set(names)) == len(names), names
    assert len(set(tables)) == len(tables), tables
    for m in METRICS:
        column_names = m.column_names
        assert len(set(column_names)) == len(column_names), f"{m.name}: duplicate columns {column_names}"
        for column in m.columns:
            assert column.pg_type in PG_TYPE, f"{m.name}.{column.name}: unknown type {column.pg_type!r}"


@pytest.mark.parametrize("metric", METRICS, ids=metric_ids())
def test_table_exists(conn, metric):
    row = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'public' AND table_name = %s",
        (metric.table,),
    ).fetchone()
    assert row == ("BASE TABLE",), f"no table public.{metric.table}"


@pytest.mark.parametrize("metric", METRICS, ids=metric_ids())
def test_columns_match_catalogue(conn, metric):
    actual = [(name, pg_type) for name, pg_type, _ in columns_of(conn, metric.table)]
    expected = [(c.name, PG_TYPE[c.pg_type]) for c in metric.columns]
    assert actual == expected

    # information_schema agrees on names and order (guards the pg_attribute query itself).
    names = [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (metric.table,),
        )
    ]
    assert names == list(metric.column_names)


@pytest.mark.parametrize("metric", METRICS, ids=metric_ids())
def test_nullability_matches_catalogue(conn, metric):
    key = {"user_id", metric.time_column, *(c.name for c in metric.extra_key)}
    actual = {name: not_null for name, _, not_null in columns_of(conn, metric.table)}
    expected = {c.name: (c.name in key or not c.nullable) for c in metric.columns}
    assert actual == expected, "True means NOT NULL"


@pytest.mark.parametrize("metric", METRICS, ids=metric_ids())
def test_primary_key_matches_catalogue(conn, metric):
    expected = ["user_id", metric.time_column, *(c.name for c in metric.extra_key)]
    assert primary_key_of(conn, metric.table) == expected


@pytest.mark.parametrize("metric", METRICS, ids=metric_ids())
def test_metric_table_is_a_hypertable_on_its_time_column(conn, metric):
    row = conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = 'public' AND hypertable_name = %s",
        (metric.table,),
    ).fetchone()
    assert row is not None, f"{metric.table} is not a hypertable"
    dimensions = conn.execute(
        "SELECT column_name, dimension_type FROM timescaledb_information.dimensions "
        "WHERE hypertable_schema = 'public' AND hypertable_name = %s ORDER BY dimension_number",
        (metric.table,),
    ).fetchall()
    assert dimensions == [(metric.time_column, "Time")]


def fitpipe_relations(conn) -> list[tuple[int, str, str]]:
    return conn.execute(
        f"""
        SELECT c.oid, c.relname, c.relkind::text
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = ANY(%(kinds)s)
          AND {NOT_EXTENSION_MEMBER.format(oid="c.oid")}
        ORDER BY c.relname
        """,
        {"kinds": list(RELKINDS), "catalog": "pg_class"},
    ).fetchall()


def test_relation_query_sees_the_schema(conn):
    # The comment tests below are only as good as this list: it must see every table we know of.
    names = {name for _, name, _ in fitpipe_relations(conn)}
    expected = {"schema_migrations", "users", "ingest_runs", "ingested_days", "quarantine", "rollup_invalidations"}
    expected |= {m.table for m in METRICS}
    assert expected <= names, expected - names


def test_every_table_has_a_comment(conn):
    missing = [
        name
        for oid, name, _ in fitpipe_relations(conn)
        if not (conn.execute("SELECT obj_description(%s, 'pg_class')", (oid,)).fetchone()[0] or "").strip()
    ]
    assert missing == [], f"tables without COMMENT ON TABLE: {missing}"


def test_every_column_has_a_comment(conn):
    relations = fitpipe_relations(conn)
    missing = [
        f"{table}.{column}"
        for table, column in conn.execute(
            """
            SELECT c.relname, a.attname
            FROM pg_class c
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.oid = ANY(%s) AND coalesce(btrim(col_description(c.oid, a.attnum)), '') = ''
            ORDER BY c.relname, a.attnum
            """,
            ([oid for oid, _, _ in relations],),
        )
    ]
    assert relations
    assert missing == [], f"columns without COMMENT ON COLUMN: {missing}"


def test_every_fitpipe_function_has_a_comment(conn):
    rows = conn.execute(
        f"""
        SELECT p.oid::regprocedure::text, coalesce(btrim(obj_description(p.oid, 'pg_proc')), '')
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND {NOT_EXTENSION_MEMBER.format(oid="p.oid")}
        """,
        {"catalog": "pg_proc"},
    ).fetchall()
    assert any(name.startswith("fitpipe_is_timezone") for name, _ in rows), rows
    missing = [name for name, comment in rows if not comment]
    assert missing == [], f"functions without COMMENT ON FUNCTION: {missing}"


def test_schema_md_is_up_to_date(database_url):
    """schema.md is generated from the migrations' COMMENTs; regenerate it after a schema change."""
    from pathlib import Path

    from fitpipe.schema_doc import render

    committed = (Path(__file__).resolve().parents[1] / "schema.md").read_text()
    with psycopg.connect(database_url) as conn:
        fresh = render(conn)
    assert committed == fresh, "schema.md is stale: run `python -m fitpipe.schema_doc > schema.md`"
