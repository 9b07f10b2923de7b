"""Storage upkeep: compression of settled chunks (community edition) and the bytes each table takes.

Why a command (`fitpipe maintain`, from cron after ingest) rather than TimescaleDB's compression
policies: a policy only knows a chunk's age, while fitpipe knows which days are settled (the
ledger) and rolled up (no pending invalidations). Compressing a chunk that a provisional day
will rewrite tomorrow would cost a decompression each night. The command also behaves the same
on both editions: on the Apache edition it says in one line that compression is unavailable.

A chunk is compressed once its whole time range lies before the *settled horizon*: the start of
the first unsettled local day of the enrolled participant furthest behind (their cursor + 1).
Rows before that instant belong to settled days only (night metrics of a settled day D end at
D+1 12:00, before D+1's own night starts). Rows written into a compressed chunk later (a
backfill --force, an imputation, a refresh) still work: TimescaleDB 2.19 decompresses the segments
touched, and the next maintain recompresses the chunk.

With --raw-retention-days N (or FITPIPE_RAW_RETENTION_DAYS), maintain first drops the chunks of
the 1 Hz raw tables past N days whose days are settled and rolled up: see retention.py.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import psycopg
import psycopg.sql

from fitpipe.catalogue import METRICS, DayWindow
from fitpipe.db import one_row
from fitpipe.derive.retention import RetentionReport, drop_raw
from fitpipe.derive.rollups import refresh
from fitpipe.ingest.ledger import settled_horizon

APACHE_NOTE = (
    "compression is unavailable: this server runs TimescaleDB's Apache edition "
    "(timescaledb.license = apache); it needs the community edition"
)


@dataclass(frozen=True)
class CompressedTable:
    table: str
    time_column: str
    # Segments hold one participant's series (and one metric/field for rollups), ordered by time,
    # so a day of one participant decompresses alone and delta encodings see a smooth series.
    segment_by: tuple[str, ...]
    order_by: tuple[str, ...]
    date_partitioned: bool = False


def compressed_tables() -> list[CompressedTable]:
    tables = [
        CompressedTable(
            m.table,
            m.time_column,
            ("user_id",),
            (m.time_column, *(c.name for c in m.extra_key)),
            m.window is DayWindow.DATE,
        )
        for m in METRICS
    ]
    tables.append(CompressedTable("rollup_1min", "bucket", ("user_id", "metric", "field"), ("bucket",)))
    return tables


def edition(conn: psycopg.Connection) -> str:
    """'community' when the Timescale-License code is active, 'apache' otherwise."""
    license_name = one_row(conn.execute("SELECT current_setting('timescaledb.license', true)"))[0]
    return "community" if license_name == "timescale" else "apache"


@dataclass
class MaintainReport:
    edition: str = "apache"
    horizon: dt.datetime | None = None
    chunks_compressed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    tables_configured: list[str] = field(default_factory=list)
    rollup_days_refreshed: int = 0
    seconds: float = 0.0
    # Set when raw retention ran (fitpipe.derive.retention).
    retention: RetentionReport | None = None


def lift_decompression_limit(conn: psycopg.Connection) -> None:
    """No cap on rows decompressed by one write transaction, for new sessions of this database.

    TimescaleDB stops a transaction that decompresses more than 100,000 rows (a guard against an
    accidental mass UPDATE). fitpipe's writes into compressed chunks are bounded by day windows,
    but a refresh of 100 participants or a re-ingest of a busy day passes that count, and failing
    them would leave a compressed store impossible to correct.
    """
    name = one_row(conn.execute("SELECT current_database()"))[0]
    conn.execute(
        psycopg.sql.SQL("ALTER DATABASE {} SET timescaledb.max_tuples_decompressed_per_dml_transaction = 0").format(
            psycopg.sql.Identifier(name)
        )
    )
    conn.execute("SET timescaledb.max_tuples_decompressed_per_dml_transaction = 0")


def configure_compression(conn: psycopg.Connection) -> list[str]:
    """Enable compression with fitpipe's settings on each table that lacks it (idempotent)."""
    lift_decompression_limit(conn)
    enabled = {
        row[0]
        for row in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'public' AND compression_enabled"
        ).fetchall()
    }
    configured = []
    for target in compressed_tables():
        if target.table in enabled:
            continue
        conn.execute(
            f"ALTER TABLE {target.table} SET (timescaledb.compress, "
            f"timescaledb.compress_segmentby = '{', '.join(target.segment_by)}', "
            f"timescaledb.compress_orderby = '{', '.join(target.order_by)}')"
        )
        configured.append(target.table)
    return configured


def _chunks_to_compress(conn: psycopg.Connection, target: CompressedTable, horizon: dt.datetime) -> list[str]:
    # Bit 1 of a chunk's status: compressed; bit 8: partial (rows written after compression).
    older_than = horizon.date() if target.date_partitioned else horizon
    # A date partition holds local dates; a date is settled everywhere once the horizon has passed it.
    return [
        row[0]
        for row in conn.execute(
            """
        SELECT s.chunk::text
        FROM show_chunks(%s::regclass, older_than => %s) AS s(chunk)
        JOIN _timescaledb_catalog.chunk c ON format('%%I.%%I', c.schema_name, c.table_name)::regclass = s.chunk
        WHERE c.status & 1 = 0 OR c.status & 8 <> 0
        ORDER BY 1
        """,
            (target.table, older_than),
        ).fetchall()
    ]


def _relation_bytes(conn: psycopg.Connection, chunk: str) -> int:
    return one_row(conn.execute("SELECT pg_total_relation_size(%s::regclass)", (chunk,)))[0]


def maintain(conn: psycopg.Connection, raw_retention_days: int | None = None) -> MaintainReport:
    """Refresh pending rollups, drop raw 1 Hz chunks past the retention (when set, both editions),
    then compress every chunk that holds settled days only."""

    started = time.perf_counter()
    report = MaintainReport(edition=edition(conn))
    conn.commit()
    # Compress only what is rolled up: a pending invalidation would rewrite rollup_1min rows.
    report.rollup_days_refreshed = refresh(conn).days
    if raw_retention_days is not None:
        # Before compression, so chunks about to go are not compressed first.
        report.retention = drop_raw(conn, raw_retention_days)
    if report.edition != "community":
        report.seconds = time.perf_counter() - started
        return report
    with conn.transaction():
        report.tables_configured = configure_compression(conn)
    report.horizon = settled_horizon(conn)
    conn.commit()
    if report.horizon is None:
        report.seconds = time.perf_counter() - started
        return report
    for target in compressed_tables():
        for chunk in _chunks_to_compress(conn, target, report.horizon):
            before = _relation_bytes(conn, chunk)
            # One transaction per chunk: a stop leaves every chunk either as it was or compressed.
            with conn.transaction():
                compressed = one_row(
                    conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)::text", (chunk,))
                )[0]
            report.chunks_compressed += 1
            report.bytes_before += before
            report.bytes_after += _compressed_bytes(conn, compressed or chunk)
    conn.commit()
    report.seconds = time.perf_counter() - started
    return report


def _compressed_bytes(conn: psycopg.Connection, chunk: str) -> int:
    row = conn.execute(
        "SELECT after_compression_total_bytes FROM chunk_compression_stats(%s::regclass) AS s "
        "JOIN (SELECT %s::regclass AS chunk) c ON format('%%I.%%I', s.chunk_schema, s.chunk_name)::regclass = c.chunk",
        (_hypertable_of(conn, chunk), chunk),
    ).fetchone()
    return int(row[0] or 0) if row else 0


def _hypertable_of(conn: psycopg.Connection, chunk: str) -> str:
    return one_row(
        conn.execute(
            "SELECT format('%%I.%%I', hypertable_schema, hypertable_name) FROM timescaledb_information.chunks "
            "WHERE format('%%I.%%I', chunk_schema, chunk_name)::regclass = %s::regclass",
            (chunk,),
        )
    )[0]


def storage_report(conn: psycopg.Connection) -> list[dict]:
    """Bytes per hypertable: in total, in uncompressed chunks, in compressed chunks (and what those
    held before compression), and the compression ratio. Catalog functions only: fast at any size."""
    community = edition(conn) == "community"
    # The total is hypertable_size()'s own sum (the hypertable's relation, its chunks, their
    # compressed chunks) taken from the view that function reads, once for every table: calling
    # hypertable_size() per table re-plans that view each time, ~150 ms a table, 2.5 s for 17.
    rows = conn.execute(
        """
        WITH chunks AS (
            SELECT hypertable_schema, hypertable_name, sum(total_bytes + compressed_total_size) AS bytes
            FROM _timescaledb_internal.hypertable_chunk_local_size
            GROUP BY hypertable_schema, hypertable_name
        )
        SELECT h.hypertable_name,
               own.total_size + coalesce(c.bytes, 0)
        FROM timescaledb_information.hypertables h
        CROSS JOIN LATERAL _timescaledb_functions.relation_size(
            format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) AS own
        LEFT JOIN chunks c USING (hypertable_schema, hypertable_name)
        WHERE h.hypertable_schema = 'public'
        ORDER BY h.hypertable_name
        """
    ).fetchall()
    compression: dict[str, tuple[int, int]] = {}
    if community:
        compression = {
            table: (int(before or 0), int(after or 0))
            for table, before, after in conn.execute(
                "SELECT h.hypertable_name, sum(s.before_compression_total_bytes), sum(s.after_compression_total_bytes) "
                "FROM timescaledb_information.hypertables h CROSS JOIN LATERAL hypertable_compression_stats("
                "format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) AS s "
                "WHERE h.hypertable_schema = 'public' GROUP BY h.hypertable_name"
            ).fetchall()
        }
    report = []
    for table, total in rows:
        before, after = compression.get(table, (0, 0))
        report.append(
            {
                "table": table,
                "bytes": int(total or 0),
                "uncompressed_bytes": int(total or 0) - after,
                "compressed_bytes": after,
                "before_compression_bytes": before,
                "ratio": round(before / after, 1) if after else None,
            }
        )
    return report
