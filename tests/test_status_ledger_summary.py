"""`fitpipe status` reads the ledger's figures from ledger_summary (migration 0090), which the
ledger's triggers recompute in the same transaction as every change: after inserts, updates,
deletes, a truncate, a moved study start and two overlapping writers of one participant, the report
must equal what the ledger rows themselves say (computed here in Python from the rows written)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import psycopg

from support.cli import fitpipe

START = dt.date(2024, 3, 1)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n)


def add(url: str, user: int) -> None:
    fitpipe(url, "participants", "add", str(user), "--source", "synthetic", "--timezone", "UTC",
            "--study-start", START.isoformat())  # fmt: skip


def write(conn: psycopg.Connection, user: int, n: int, state: str = "complete", **extra) -> None:
    counts = extra.get("counts", {"heart_rate": 100 + n, "spo2": 3})
    conn.execute(
        "INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, state, "
        "raw_dropped_at) VALUES (%s, %s, 'synthetic', %s, %s, %s, %s, %s)",
        (user, day(n), sum(counts.values()), json.dumps(counts), extra.get("quarantined", 0), state,
         dt.datetime.now(dt.UTC) if extra.get("rollup_only") else None),
    )  # fmt: skip


def expected(conn: psycopg.Connection, user: int) -> dict:
    """The report's ledger figures, computed in Python from the participant's ledger rows."""
    rows = conn.execute(
        "SELECT day, state, quarantined, rows_by_metric, raw_dropped_at IS NOT NULL "
        "FROM ingested_days WHERE user_id = %s ORDER BY day",
        (user,),
    ).fetchall()
    in_study = [r for r in rows if r[0] >= START]
    loaded = [r[0] for r in in_study if r[1] != "deferred"]
    present = {r[0] for r in rows}
    last_any = max((r[0] for r in in_study), default=None)
    span = (last_any - START).days + 1 if last_any else 0
    missing = [d for d in (START + dt.timedelta(days=i) for i in range(span)) if d not in present]
    cursor = None
    settled = {r[0] for r in in_study if r[1] in ("complete", "empty")}
    probe = START
    while probe in settled:
        cursor, probe = probe, probe + dt.timedelta(days=1)
    totals: dict[str, int] = {}
    for r in rows:
        for metric, count in r[3].items():
            totals[metric] = totals.get(metric, 0) + count
    rollup_only = [r[0] for r in in_study if r[4]]
    return {
        "cursor": cursor and cursor.isoformat(),
        "days_ingested": len(loaded),
        "last_ingested": max(loaded).isoformat() if loaded else None,
        "missing_days": [d.isoformat() for d in missing],
        "quarantined": sum(r[2] for r in in_study),
        "states": {s: sum(1 for r in in_study if r[1] == s) for s in ("complete", "empty", "provisional", "deferred")},
        "provisional_days": [r[0].isoformat() for r in in_study if r[1] == "provisional"],
        "heart_rate": totals.get("heart_rate", 0),
        "spo2": totals.get("spo2", 0),
        "rollup_only": {
            "days": len(rollup_only),
            "first": min(rollup_only).isoformat() if rollup_only else None,
            "last": max(rollup_only).isoformat() if rollup_only else None,
        },
    }


def reported(url: str) -> dict[int, dict]:
    report = json.loads(fitpipe(url, "status", "--json").stdout)
    out = {}
    for user in report["users"]:
        picked = {key: user[key] for key in ("cursor", "days_ingested", "last_ingested", "missing_days",
                                             "quarantined", "states", "provisional_days", "rollup_only")}  # fmt: skip
        picked["heart_rate"], picked["spo2"] = user["rows"]["heart_rate"], user["rows"]["spo2"]
        out[user["user_id"]] = picked
    return out


def assert_agrees(url: str, conn: psycopg.Connection, users: tuple[int, ...]) -> dict[int, dict]:
    got = reported(url)
    for user in users:
        assert got[user] == expected(conn, user), user
    return got


def test_status_follows_every_kind_of_ledger_change(database_url, db):
    for user in (1, 2):
        add(database_url, user)
    zero = reported(database_url)[1]
    assert (zero["days_ingested"], zero["cursor"], zero["missing_days"], zero["heart_rate"]) == (0, None, [], 0)

    write(db, 1, -2)  # before the study start: only the rows per metric count it
    for n in (0, 1, 2, 4, 5):
        write(db, 1, n, quarantined=n, rollup_only=n < 2)
    write(db, 1, 6, "empty", counts={})
    write(db, 1, 7, "provisional")
    write(db, 1, 8, "deferred", counts={})
    with db.transaction():  # one statement, two participants
        db.execute(
            "INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, state) "
            "VALUES (2, %s, 'synthetic', 5, '{\"heart_rate\": 5}', 1, 'complete'), "
            "(1, %s, 'synthetic', 9, '{\"heart_rate\": 9}', 0, 'provisional')",
            (day(0), day(10)),
        )
    got = assert_agrees(database_url, db, (1, 2))
    assert got[1]["cursor"] == day(2).isoformat()
    assert got[1]["missing_days"] == [day(3).isoformat(), day(9).isoformat()]
    assert got[1]["heart_rate"] == 100 - 2 + sum(100 + n for n in (0, 1, 2, 4, 5, 7)) + 9
    assert got[2]["days_ingested"] == 1

    write(db, 1, 3)  # the gap filled: the cursor moves over the settled days after it
    db.execute("UPDATE ingested_days SET state = 'complete', note = NULL WHERE user_id = 1 AND day = %s", (day(7),))
    got = assert_agrees(database_url, db, (1, 2))
    assert got[1]["cursor"] == day(7).isoformat()

    db.execute("DELETE FROM ingested_days WHERE user_id = 1 AND day IN (%s, %s)", (day(1), day(10)))
    got = assert_agrees(database_url, db, (1, 2))
    assert got[1]["cursor"] == day(0).isoformat()
    assert got[1]["missing_days"] == [day(1).isoformat()]

    db.execute("UPDATE users SET study_start = %s WHERE user_id = 2", (day(-1),))
    assert reported(database_url)[2]["missing_days"] == [day(-1).isoformat()]
    db.execute("UPDATE users SET study_start = %s WHERE user_id = 2", (START,))

    db.execute("TRUNCATE ingested_days")
    got = reported(database_url)
    assert [got[u]["days_ingested"] for u in (1, 2)] == [0, 0]
    assert db.execute("SELECT count(*) FROM ledger_summary").fetchone()[0] == 0


def test_overlapping_writers_of_one_participant_both_count(database_url, db):
    """The second writer's summary, computed while the first had not committed, must not hide
    the first's day: the trigger waits for the summary row and recomputes after it."""
    add(database_url, 1)
    write(db, 1, 0)
    first = psycopg.connect(database_url)
    try:
        write(first, 1, 1)  # open transaction: the summary row is locked until commit
        second_done = threading.Event()

        def second_writer() -> None:
            with psycopg.connect(database_url) as second:
                write(second, 1, 2)
                second.commit()
            second_done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not second_done.wait(1.0), "the second writer did not wait for the first"
        first.commit()
        thread.join(30)
        assert second_done.is_set()
    finally:
        first.close()
    got = assert_agrees(database_url, db, (1,))
    assert (got[1]["days_ingested"], got[1]["cursor"]) == (3, day(2).isoformat())


def test_a_removed_participant_leaves_no_summary(database_url, db):
    add(database_url, 1)
    write(db, 1, 0)
    assert db.execute("SELECT days_ingested FROM ledger_summary WHERE user_id = 1").fetchone() == (1,)
    db.execute("DELETE FROM users WHERE user_id = 1")
    assert db.execute("SELECT count(*) FROM ledger_summary").fetchone()[0] == 0
