"""`fitpipe lake sync`: bring the lake in step with the database's settled days.

1. Read the database's per participant-day fingerprints (fitpipe.lake.state) in one
   repeatable-read snapshot, and compare them with the manifest's.
2. For every (table, month, participant range) holding a changed day: when the change only adds
   days and the partition has few files, write one more file with those days' rows; otherwise
   rewrite the partition: its rows for unchanged days read back from the lake (so rows that raw
   retention dropped from the database stay), the changed days' rows from the database.
3. Swap in the new manifest, then delete the files it no longer names.

A sync with nothing to do writes nothing. A killed sync leaves the previous manifest and every
file it names; files of the killed run are hidden temporaries or unnamed parts the next sync
deletes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from fitpipe.catalogue import DayWindow
from fitpipe.days import ONE_DAY
from fitpipe.db import one_row
from fitpipe.errors import BadInput
from fitpipe.lake import manifest as manifests
from fitpipe.lake.layout import (
    DATASETS,
    FAMILIES,
    MANIFEST,
    MAX_FILES_PER_PARTITION,
    STATE_DIR,
    TEMP_PREFIX,
    Dataset,
    month_of,
)
from fitpipe.lake.manifest import FileEntry, Manifest
from fitpipe.lake.state import Key, State, database_state, key_codes
from fitpipe.lake.writer import PartFile, fetch, windows
from fitpipe.participants import User

# Participant-days fetched in one COPY: about a day of 1 Hz heart rate for 10 participants.
_FETCH_ROWS = 1_000_000
_ROWS_PER_DAY = {"1s": 80_000, "1min": 1_000}


@dataclass
class SyncReport:
    changed_days: dict[str, int] = field(default_factory=lambda: {f: 0 for f in FAMILIES})
    files_written: int = 0
    files_deleted: int = 0
    rows_written: int = 0
    rows_from_database: int = 0
    bytes_written: int = 0
    withdrawn: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        return not any(self.changed_days.values())


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    with open(root / "_lake.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another lake sync is writing {root}; try again when it has finished") from None
        yield


def _changes(old: State, new: State) -> tuple[set[Key], set[Key]]:
    """(keys whose lake rows must go, keys whose rows must come from the database)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    before = pa.table({"code": key_codes(old), "old": old["fingerprint"]})
    after = pa.table({"code": key_codes(new), "new": new["fingerprint"]})
    joined = before.join(after, "code", join_type="full outer")
    differs = pc.fill_null(pc.not_equal(joined["old"], joined["new"]), True)
    changed = joined.filter(differs)
    gone = changed.filter(pc.is_valid(changed["old"]))["code"].to_numpy()
    fetch_codes = changed.filter(pc.is_valid(changed["new"]))["code"].to_numpy()
    return _keys(gone), _keys(fetch_codes)


def _keys(codes) -> set[Key]:
    """The (user_id, day) of key_codes' int64s (the day in the low 32 bits, signed)."""
    epoch = dt.date(1970, 1, 1)
    days = (codes & 0xFFFFFFFF).astype("uint32").view("int32")
    return {(int(code >> 32), epoch + dt.timedelta(days=int(day))) for code, day in zip(codes, days, strict=True)}


def _days_per_fetch(dataset: Dataset) -> int:
    from fitpipe.catalogue import BY_NAME

    metric = BY_NAME.get(dataset.name)
    per_day = _ROWS_PER_DAY.get(metric.resolution, 10) if metric else {"rollup_1min": 10_000}.get(dataset.name, 1_000)
    return max(1, _FETCH_ROWS // per_day)


def _old_rows(root: Path, files: list[FileEntry], users: list[int], drop: set[Key]):
    """Rows of these participants in the partition's files, without the days in `drop`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not files:
        return None
    data = ds.dataset([str(root / f.path) for f in files], format="parquet")
    table = data.to_table(filter=pc.field("user_id").isin(pa.array(users, pa.int32())))
    dropped = [(u, d) for u, d in drop if u in set(users)]
    if dropped and table.num_rows:
        keep = pc.invert(
            pc.is_in(
                pc.binary_join_element_wise(
                    pc.cast(table["user_id"], pa.string()), pc.cast(table["ledger_day"], pa.string()), "|"
                ),
                value_set=pa.array([f"{u}|{d.isoformat()}" for u, d in dropped]),
            )
        )
        table = table.filter(keep)
    return table


def _sorted(table, dataset: Dataset):
    """Rows in the dataset's order (participant, then time); enums sort by their text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.table(
        {
            name: table[name].cast(pa.string()) if pa.types.is_dictionary(table[name].type) else table[name]
            for name in dataset.sort
        }
    )
    return table.take(pc.sort_indices(keys, [(name, "ascending") for name in dataset.sort]))


def _write_partition(conn: psycopg.Connection, root: Path, job: _Job, users: dict[int, User]) -> None:
    """A new file for the partition: the kept rows of `old_files` and the fetched days, in order."""
    import pyarrow as pa

    from fitpipe.lake.writer import conform, schema

    dataset, old_files, gone = job.dataset, job.merged, job.gone
    part = PartFile(root, dataset, job.month, *job.user_range)
    by_user: dict[int, list[dt.date]] = defaultdict(list)
    for user_id, day in job.fetch_keys:
        by_user[user_id].append(day)
    old_users = set()
    if old_files:
        import pyarrow.dataset as ds

        old_users = set(
            ds.dataset([str(root / f.path) for f in old_files], format="parquet")
            .to_table(columns=["user_id"])
            .column("user_id")
            .unique()
            .to_pylist()
        )
    everyone = sorted(set(by_user) | old_users)
    per_fetch = _days_per_fetch(dataset)
    group: list[int] = []
    group_days = 0
    target = schema(dataset)

    def emit(group: list[int]) -> None:
        day_windows = [w for u in group if u in by_user for w in windows(dataset, users[u], sorted(by_user[u]))]
        new = fetch(conn, dataset, day_windows)
        job.rows_from_database += new.num_rows
        old = _old_rows(root, old_files, group, gone) if old_files else None
        pieces = [conform(t, target) for t in (old, new) if t is not None and t.num_rows]
        if pieces:
            part.add(_sorted(pa.concat_tables(pieces), dataset))

    try:
        for user_id in everyone:
            group.append(user_id)
            group_days += max(1, len(by_user.get(user_id, [])))
            if group_days >= per_fetch:
                emit(group)
                group, group_days = [], 0
        if group:
            emit(group)
    except BaseException:
        part.abandon()
        raise
    job.written = part.finish()


def sync(conn: psycopg.Connection, root: Path) -> SyncReport:
    """Make the lake at `root` reflect the database's settled days; returns what it did."""
    started = time.perf_counter()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise BadInput("the lake needs pyarrow: pip install 'fitpipe[lake]'") from None
    root.mkdir(parents=True, exist_ok=True)
    report = SyncReport()
    with _exclusive(root):
        current = manifests.load(root)
        conn.commit()  # the snapshot below must be a transaction of its own, not a savepoint
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL TimeZone = 'UTC'")
            state, users = database_state(conn, current.days["derived"])
            changes = {family: _changes(current.days[family], state[family]) for family in FAMILIES}
            for family, (gone, fetch_keys) in changes.items():
                report.changed_days[family] = len(gone | fetch_keys)
            if report.nothing_to_do:
                _collect_garbage(root, current, report)
                report.seconds = time.perf_counter() - started
                return report
            new_files = _write_changes(conn, root, current, changes, users, report)
        following = Manifest(
            generation=current.generation + 1,
            files=new_files,
            withdrawals=list(current.withdrawals),
            days=state,
        )
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for user_id, days in _withdrawn(current, users):
            following.withdrawals.append({"user_id": user_id, "removed_at": now, "days": days})
            report.withdrawn.append(user_id)
        manifests.save(root, following)
        _collect_garbage(root, following, report)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _Job:
    """One partition to write: its kept files (to merge and replace) and its changed days."""

    dataset: Dataset
    month: str
    user_range: tuple[int, int]
    merged: list[FileEntry]
    gone: set[Key]
    fetch_keys: set[Key]
    rows_from_database: int = 0
    written: tuple[Path, int] | None = None


def _plan(
    conn: psycopg.Connection,
    current: Manifest,
    changes: dict[str, tuple[set[Key], set[Key]]],
    users: dict[int, User],
) -> list[_Job]:
    """The partitions to write, biggest tables first (so two workers end together)."""
    existing: dict[tuple[str, str, tuple[int, int]], list[FileEntry]] = defaultdict(list)
    for f in current.files:
        existing[(f.table, f.month, (f.first_user, f.last_user))].append(f)
    jobs = []
    for dataset in sorted(DATASETS, key=lambda d: d.users_per_file):
        gone, fetch_keys = changes[dataset.family]
        partitions: dict[tuple[str, tuple[int, int]], tuple[set[Key], set[Key]]] = defaultdict(lambda: (set(), set()))
        for key in gone:
            partitions[(month_of(key[1]), dataset.user_range(key[0]))][0].add(key)
        for key in _with_rows(conn, dataset, fetch_keys, users):
            partitions[(month_of(key[1]), dataset.user_range(key[0]))][1].add(key)
        for (month, user_range), (part_gone, part_fetch) in sorted(partitions.items()):
            files = existing[(dataset.name, month, user_range)]
            append_only = not part_gone and len(files) < MAX_FILES_PER_PARTITION
            if append_only and not part_fetch:
                continue
            jobs.append(_Job(dataset, month, user_range, [] if append_only else files, part_gone, part_fetch))
    return jobs


def _write_changes(
    conn: psycopg.Connection,
    root: Path,
    current: Manifest,
    changes: dict[str, tuple[set[Key], set[Key]]],
    users: dict[int, User],
    report: SyncReport,
) -> list[FileEntry]:
    """Write every changed partition's new file; the manifest's file list after them."""
    jobs = _plan(conn, current, changes, users)
    _run(conn, jobs, lambda job, db: _write_partition(db, root, job, users))
    replaced = {f for job in jobs for f in job.merged}
    files = [f for f in current.files if f not in replaced]
    for job in jobs:
        report.rows_from_database += job.rows_from_database
        if job.written is not None:
            path, rows = job.written
            size = path.stat().st_size
            files.append(
                FileEntry(job.dataset.name, job.month, *job.user_range, str(path.relative_to(root)), rows, size)
            )
            report.files_written += 1
            report.rows_written += rows
            report.bytes_written += size
    return files


def _run(conn: psycopg.Connection, jobs: list[_Job], work: Callable[[_Job, psycopg.Connection], None]) -> None:
    """Run the jobs on `conn` and, when there are several, on a second connection reading the same
    snapshot: the server's COPY and pyarrow's Parquet encoding of one job run while the other job
    waits, so both cores work."""
    if len(jobs) < 2:
        for job in jobs:
            work(job, conn)
        return
    snapshot = one_row(conn.execute("SELECT pg_export_snapshot()"))[0]
    queue = iter(list(jobs))
    lock = threading.Lock()

    def drain(db: psycopg.Connection) -> None:
        while True:
            with lock:
                job = next(queue, None)
            if job is None:
                return
            work(job, db)

    with psycopg.connect(conn.info.dsn, password=conn.info.password) as other, other.transaction():
        other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        other.execute("SET LOCAL TimeZone = 'UTC'")
        with ThreadPoolExecutor(max_workers=1) as pool:
            helper = pool.submit(drain, other)
            try:
                drain(conn)
            finally:
                queue = iter(())  # the helper stops after its current job when this one fails
                helper.result()


def _with_rows(conn: psycopg.Connection, dataset: Dataset, keys: set[Key], users: dict[int, User]) -> list[Key]:
    """The keys whose participant has any row of the table in the span of their month's days: one
    query per month (an index probe per participant), so that a table a cohort does not have, or
    a month without its rows, costs no fetch per participant-day."""
    by_month: dict[str, dict[int, list[dt.date]]] = defaultdict(lambda: defaultdict(list))
    for user_id, day in keys:
        by_month[month_of(day)][user_id].append(day)
    kept: list[Key] = []
    for month_days in by_month.values():
        spans = []
        for user_id, days in month_days.items():
            first, last = windows(dataset, users[user_id], [min(days), max(days)])
            spans.append((user_id, first[1], last[1], first[2], last[3]))
        present = _present(conn, dataset, spans)
        kept.extend((user_id, day) for user_id in present for day in month_days[user_id])
    return kept


def _present(conn: psycopg.Connection, dataset: Dataset, spans: list[tuple]) -> set[int]:
    """Of the (user, first day, last day, lo, hi) spans, the users with a row of the table in theirs.

    Tables keyed (user_id, time, ...): one index probe per participant (LATERAL ... ORDER BY time
    LIMIT 1, an index scan that stops at the first row). Rollups and imputed values, keyed (user_id,
    metric, field, time), have no index that finds a participant's first row in a span cheaply:
    for them, whether the table has any row in the month at all. Both also take the month's whole
    span as constants, so that only its chunks are planned: a month without chunks costs nothing.
    """
    if dataset.window is DayWindow.DATE:
        time, lo, hi = "t.day", min(span[1] for span in spans), max(span[2] for span in spans) + ONE_DAY
        mine = "t.day BETWEEN s.first AND s.last"
    else:
        time, lo, hi = f"t.{dataset.time_column}", min(span[3] for span in spans), max(span[4] for span in spans)
        mine = f"{time} >= s.lo AND {time} < s.hi"
    month = f"{time} >= %s AND {time} < %s"
    if dataset.sort[1] != time.removeprefix("t."):
        row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {dataset.name} t WHERE {month})", [lo, hi]).fetchone()
        return {span[0] for span in spans} if row and row[0] else set()
    rows = conn.execute(
        "SELECT s.user_id FROM unnest(%s::int[], %s::date[], %s::date[], %s::timestamptz[], %s::timestamptz[]) "
        f"AS s(user_id, first, last, lo, hi) CROSS JOIN LATERAL (SELECT 1 FROM {dataset.name} t "
        f"WHERE t.user_id = s.user_id AND {mine} AND {month} ORDER BY {time} LIMIT 1) AS found",
        [*(list(column) for column in zip(*spans, strict=True)), lo, hi],
    )
    return {user_id for (user_id,) in rows}


def _withdrawn(current: Manifest, users: dict[int, User]) -> list[tuple[int, int]]:
    """(participant, days the lake held) of those the lake has days of but the database no longer has."""
    import pyarrow.compute as pc

    held = {u for family in FAMILIES for u in pc.unique(current.days[family]["user_id"]).to_pylist()}
    tally = pc.value_counts(current.days["raw"]["user_id"])
    counts = dict(zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True))
    return [(u, counts.get(u, 0)) for u in sorted(held - set(users))]


def _collect_garbage(root: Path, kept: Manifest, report: SyncReport) -> None:
    """Delete what the manifest does not name: superseded parts, leftovers of killed syncs."""
    named = {root / f.path for f in kept.files}
    if kept.days_file:
        named.add(root / kept.days_file)
    for path in root.glob("table=*/month=*/*"):
        if path not in named and (path.name.endswith(".parquet")):
            path.unlink(missing_ok=True)
            report.files_deleted += path.name.startswith("part-")
    for path in (root / STATE_DIR).glob("*.parquet") if (root / STATE_DIR).exists() else ():
        if path not in named:
            path.unlink(missing_ok=True)
    (root / f"{TEMP_PREFIX}{MANIFEST}").unlink(missing_ok=True)
    for directory in root.glob("table=*/month=*"):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
