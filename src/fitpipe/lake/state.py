"""What the database holds now, per settled participant-day: one fingerprint per family.

- raw: the ledger's state, content hash and load time of the day. A re-ingest with new content
  (backfill --force, an import, a late-settled day) changes it; raw retention does not touch
  these columns, so days whose 1 Hz rows the database dropped keep their rows in the lake.
- derived: a 64-bit hash of the day's rollup_1d rows (metric, field, counts and the binary
  double-precision sums, measured and imputed), which changes whenever the day's rollups or
  imputed values do.
  A day with a pending rollup change record keeps the derived state the lake already has until
  a refresh has consumed it, so the lake never copies half-refreshed rollups.

Only settled days (complete or empty) are here: provisional and deferred days stay out of the lake.

A family's state is an Arrow table (user_id, day, fingerprint), one row per participant-day: a
year of a 1,000-participant cohort is 365,000 rows, compared and stored without a Python object
per day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import psycopg

from fitpipe.days import ONE_DAY
from fitpipe.ingest.ledger import SETTLED
from fitpipe.participants import User, list_users

Key = tuple[int, dt.date]
State = Any  # a pyarrow.Table (user_id int32, day date32, fingerprint string)


def empty_state() -> State:
    return _schema().empty_table()


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("user_id", pa.int32(), nullable=False),
            pa.field("day", pa.date32(), nullable=False),
            pa.field("fingerprint", pa.string(), nullable=False),
        ]
    )


def key_codes(table: State) -> np.ndarray:
    """One int64 per row naming its (user_id, day), for joins and set tests."""
    users = table["user_id"].to_numpy().astype(np.int64)
    days = table["day"].cast("int32").to_numpy().astype(np.int64)
    return users << 32 | (days & 0xFFFFFFFF)


def keys_of(table: State) -> set[Key]:
    return set(zip(table["user_id"].to_pylist(), table["day"].to_pylist(), strict=True))


def raw_fingerprints(conn: psycopg.Connection) -> State:
    from fitpipe.lake.writer import copy_csv

    return copy_csv(
        conn,
        psycopg.ClientCursor(conn).mogrify(
            "SELECT user_id, day, md5(state || '|' || coalesce(content_hash, '') || '|' || ingested_at::text) "
            "FROM ingested_days WHERE state = ANY(%s)",
            (list(SETTLED),),
        ),
        _schema(),
    )


def _day_starts(users: dict[int, User], keys: State) -> np.ndarray:
    """The UTC instant (microseconds since 1970) each key's local day begins, vectorised by zone
    (the same rule as User.day_start)."""
    from fitpipe.timezones import local_to_utc

    user_ids = keys["user_id"].to_numpy()
    days = keys["day"].to_numpy().astype("datetime64[D]")
    zone_names: list[str] = []
    zone_of = np.zeros(len(days), np.int32)
    order = np.argsort(user_ids, kind="stable")
    bounds = np.flatnonzero(np.diff(user_ids[order])) + 1
    for rows in np.split(order, bounds) if len(order) else ():
        user = users.get(int(user_ids[rows[0]]))
        if user is None:
            zone_of[rows] = -1
            continue
        if user.zones:
            starts = np.array([start for start, _ in user.zones], "datetime64[D]")
            which = np.maximum(np.searchsorted(starts, days[rows], side="right") - 1, 0)
            names = [zone for _, zone in user.zones]
        else:
            which, names = np.zeros(len(rows), np.int64), [user.timezone]
        codes = []
        for name in names:
            if name not in zone_names:
                zone_names.append(name)
            codes.append(zone_names.index(name))
        zone_of[rows] = np.array(codes, np.int32)[which]
    starts_us = np.full(len(days), np.iinfo(np.int64).min, np.int64)
    for code, name in enumerate(zone_names):
        mine = np.flatnonzero(zone_of == code)
        local = days[mine].astype("datetime64[us]")
        starts_us[mine] = local_to_utc(local, name, nonexistent="shift_forward").astype(np.int64)
    return starts_us


def derived_fingerprints(conn: psycopg.Connection, users: dict[int, User], settled: State, previous: State) -> State:
    """Fingerprints of the settled days' rollups ("" for a day without any); a day with a pending
    change keeps `previous`, or stays out when the lake has none for it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from fitpipe.lake.writer import copy_csv

    keys = pa.table(
        {
            "user_id": settled["user_id"],
            "day": settled["day"],
            "bucket": pa.array(_day_starts(users, settled), pa.int64()),
        }
    )
    # The binary values hashed, no text made of each double and no sort within a day: a year of a
    # 1,000-participant cohort (3.65 M rows) takes about 2 s of the server, not 12. A hash table
    # of the days fits in the memory allowed here, so the server does not sort them either.
    conn.execute("SET LOCAL work_mem = '256MB'")
    buckets = copy_csv(
        conn,
        "SELECT user_id, (extract(epoch FROM bucket) * 1000000)::bigint, bit_xor(hash_record_extended("
        "ROW(metric, field, n_measured, sum_measured, n_imputed, sum_imputed), 0))::text "
        "FROM rollup_1d GROUP BY user_id, bucket",
        pa.schema([("user_id", pa.int32()), ("bucket", pa.int64()), ("fingerprint", pa.string())]),
    )
    conn.execute("SET LOCAL work_mem TO DEFAULT")
    found = keys.join(buckets, ["user_id", "bucket"], join_type="left outer")
    found = pa.table(
        {
            "user_id": found["user_id"],
            "day": found["day"],
            "fingerprint": pc.fill_null(found["fingerprint"], ""),
        }
    ).cast(_schema())
    pending = _pending_keys(conn, users)
    if not pending:
        return found
    pending_codes = np.array(sorted((u << 32) | (d - dt.date(1970, 1, 1)).days for u, d in pending), np.int64)
    kept = found.filter(pa.array(~np.isin(key_codes(found), pending_codes)))
    held = previous.filter(
        pa.array(np.isin(key_codes(previous), pending_codes) & np.isin(key_codes(previous), key_codes(found)))
    )
    return pa.concat_tables([kept, held.cast(_schema())])


def _pending_keys(conn: psycopg.Connection, users: dict[int, User]) -> set[Key]:
    """The participant-days a pending rollup change record covers."""
    pending: set[Key] = set()
    for user_id, lo, hi in conn.execute("SELECT user_id, lo, hi FROM rollup_invalidations"):
        user = users.get(user_id)
        if user is None:
            continue
        day, last = user.local_day_of(lo), user.local_day_of(hi - dt.timedelta(microseconds=1))
        while day <= last:
            pending.add((user_id, day))
            day += ONE_DAY
    return pending


def database_state(conn: psycopg.Connection, previous_derived: State) -> tuple[dict[str, State], dict[int, User]]:
    """({family: state}, users by id) as the database holds them now."""
    users = {u.user_id: u for u in list_users(conn)}
    raw = raw_fingerprints(conn)
    derived = derived_fingerprints(conn, users, raw, previous_derived)
    return {"raw": raw, "derived": derived}, users
