"""The participants' devices and their last sync (table participant_devices, migration 0085): recorded
in the transaction of the day whose fetch asked, read by `status` and `adherence`.

A day is "missing" when it settled empty although a tracker of the participant has synced past its
end: the data had every chance to arrive and did not (the watch was not worn, or Google lost it).
Days of a participant whose source gives no sync evidence are never called missing, only empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from fitpipe.sources.contract import DeviceSync

# The night window of day D ends at noon of D+1 (contract.day_end); in SQL, by the zone of D+1.
_DAY_END_SQL = "((d.day + 1)::timestamp + interval '12 hours') AT TIME ZONE fitpipe_zone_on(d.user_id, d.day + 1)"
# Sync evidence per participant: the latest sync of a tracker (DeviceSync.last_sync).
_LAST_SYNC_SQL = """
    SELECT user_id, max(last_sync_time) AS last_sync
    FROM participant_devices
    WHERE coalesce(device_type, '') IN ('', 'TRACKER', 'DEVICE_TYPE_UNSPECIFIED')
    GROUP BY user_id"""


def record_devices(conn: psycopg.Connection, user_id: int, source: str, sync: DeviceSync) -> None:
    """Replace the participant's devices from this source with what it reported now."""
    names = [d.device for d in sync.devices]
    conn.execute(
        "DELETE FROM participant_devices WHERE user_id = %s AND source = %s AND NOT device = ANY(%s)",
        (user_id, source, names),
    )
    for d in sync.devices:
        conn.execute(
            """
            INSERT INTO participant_devices (user_id, source, device, device_type, device_version, last_sync_time,
                                             battery_level, battery_status, checked_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (user_id, source, device) DO UPDATE SET
                device_type = excluded.device_type, device_version = excluded.device_version,
                -- A report never moves the last sync back: a late answer must not unsettle days.
                last_sync_time = greatest(participant_devices.last_sync_time, excluded.last_sync_time),
                battery_level = excluded.battery_level, battery_status = excluded.battery_status,
                checked_at = now()
            """,
            (
                user_id,
                source,
                d.device,
                d.device_type,
                d.device_version,
                d.last_sync_time,
                d.battery_level if d.battery_level is None or 0 <= d.battery_level <= 100 else None,
                d.battery_status,
            ),
        )


def devices_by_user(conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[int, list[dict]]:
    """Each participant's devices, latest sync first, for `status`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT user_id, device, device_type, device_version, last_sync_time, battery_level, battery_status, "
            "checked_at FROM participant_devices WHERE user_id = ANY(%s) "
            "ORDER BY user_id, last_sync_time DESC NULLS LAST, device",
            (list(user_ids),),
        )
        found: dict[int, list[dict]] = {}
        for row in cur.fetchall():
            found.setdefault(row.pop("user_id"), []).append(row)
        return found


def missing_days(
    conn: psycopg.Connection, user_ids: Sequence[int], first: dt.date | None = None, last: dt.date | None = None
) -> dict[int, list[dt.date]]:
    """Per participant, the settled empty days (from the study start, within [first, last] when
    given) whose end a tracker of theirs has synced past."""
    rows = conn.execute(
        f"""
        WITH synced AS ({_LAST_SYNC_SQL})
        SELECT d.user_id, array_agg(d.day ORDER BY d.day)
        FROM ingested_days d JOIN users u USING (user_id) JOIN synced s USING (user_id)
        WHERE d.user_id = ANY(%(users)s) AND d.state = 'empty' AND d.day >= u.study_start
          AND (%(first)s::date IS NULL OR d.day >= %(first)s) AND (%(last)s::date IS NULL OR d.day <= %(last)s)
          AND s.last_sync >= {_DAY_END_SQL}
        GROUP BY d.user_id
        """,
        {"users": list(user_ids), "first": first, "last": last},
    ).fetchall()
    return {user_id: list(days) for user_id, days in rows}


def last_syncs(conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[int, dt.datetime | None]:
    """Per participant with sync evidence, the latest sync of a tracker (None: trackers that never synced)."""
    rows = conn.execute(
        f"SELECT user_id, last_sync FROM ({_LAST_SYNC_SQL}) s WHERE user_id = ANY(%s)", (list(user_ids),)
    ).fetchall()
    return dict(rows)
