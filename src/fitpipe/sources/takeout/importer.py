"""`fitpipe import` as a library: open and recognise an archive, index and stage it, list what
it holds, load it day by day through the runner, and record the import.

Nothing touches the database before the whole archive has been read: a broken zip, a damaged
member or an unknown layout stops the import with nothing written. Loading then goes day by
day, each day atomic (replace_day), so an interrupted import leaves whole days, and importing
again finishes it.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from fitpipe.days import days_between
from fitpipe.db import one_row
from fitpipe.errors import BadInput
from fitpipe.ingest.ledger import last_complete_day
from fitpipe.ingest.runner import Plan, Progress, RunSummary, Task
from fitpipe.participants import User, list_users
from fitpipe.pipeline import RunResult, run
from fitpipe.sources.takeout.archive import LAYOUT_DESCRIPTIONS, Archive, Member
from fitpipe.sources.takeout.clocks import ClockDecision, decide, parse_overrides
from fitpipe.sources.takeout.families import FAMILIES, family_of, file_day
from fitpipe.sources.takeout.index import Index, Indexer, Stage
from fitpipe.sources.takeout.index import metric_of as metric_name
from fitpipe.sources.takeout.source import TakeoutSource
from fitpipe.sources.takeout.staging import make_stage_dir
from fitpipe.timezones import validate_timezone

SOURCE = "takeout"
# How the listing names a kind that fills one column of a daily table.
_SHOWN_AS = {"steps": "daily_activity.steps", "resting_heart_rate": "heart_rate_daily.resting_bpm"}
_ORIGIN = {f.id: f.origin for f in FAMILIES}


@dataclass
class Previous:
    import_id: int
    imported_at: dt.datetime
    run_id: int | None


@dataclass
class ImportPlan:
    user: User
    archive: Archive
    sha256: str
    timezone: str | None
    previous: Previous | None = None
    index: Index | None = None
    stage_dir: Path | None = None
    days: list[dt.date] = field(default_factory=list)  # what the load will do
    not_over: list[dt.date] = field(default_factory=list)  # in the archive but not over yet: left out
    # Days with records left out unless asked for (--all-days): reason -> those days.
    left_out: dict[str, list[dt.date]] = field(default_factory=dict)
    # Days left as they are: a file of theirs could not be read, and the rows on file would be lost.
    kept: dict[dt.date, list[str]] = field(default_factory=dict)
    all_days: bool = False
    assumptions: list[str] = field(default_factory=list)
    clock_overrides: dict[str, str] = field(default_factory=dict)  # --clock FAMILY=utc|local
    clocks: dict[str, ClockDecision] = field(default_factory=dict)  # decided per family for this archive

    def clock_report(self) -> dict[str, dict]:
        """Per family whose clock was decided: the clock, what decided it and the deciding figure."""
        return {f: {"origin": _ORIGIN[f], **d.as_dict()} for f, d in sorted(self.clocks.items())}

    @property
    def indexed(self) -> Index:
        """The archive's index, which index_archive sets before anything reads it."""
        if self.index is None:
            raise RuntimeError("the archive has not been indexed yet")
        return self.index

    @property
    def first_day(self) -> dt.date | None:
        return self.index.days[0] if self.index and self.index.days else None

    @property
    def last_day(self) -> dt.date | None:
        return self.index.days[-1] if self.index and self.index.days else None

    def report(self) -> dict:
        """What the archive holds and what the import will load or skip, for the listing."""
        index = self.indexed
        per_kind = index.per_kind()
        metrics = []
        empty: dict = {"records": 0, "first": None, "last": None, "used": {}, "copies_dropped": {}}
        for kind in sorted(set(per_kind) | set(index.health_connect) | set(index.no_value) | set(index.repeated)):
            entry = per_kind.get(kind, empty)
            metrics.append(
                {
                    "metric": _SHOWN_AS.get(kind, kind),
                    "records": entry["records"],
                    "first": entry["first"],
                    "last": entry["last"],
                    "from": dict(entry["used"]),
                    "copies_dropped": dict(entry["copies_dropped"]),
                    "health_connect_dropped": index.health_connect.get(kind, 0),
                    "no_value": index.no_value.get(kind, 0),
                    "repeated": index.repeated.get(kind, 0),
                }
            )
        skipped = collections.Counter(s["reason"] for s in index.files_skipped)
        return {
            "path": str(self.archive.path),
            "kind": self.archive.kind,
            "sha256": self.sha256,
            "layout": index.layout,
            "layout_description": LAYOUT_DESCRIPTIONS[index.layout],
            "trees": index.trees,
            "files": len(self.archive.members),
            "files_used": len(index.files_used),
            "files_skipped": len(index.files_skipped),
            "skipped_reasons": dict(skipped.most_common()),
            "first_day": self.first_day,
            "last_day": self.last_day,
            "days": len(self.days),
            "not_over": self.not_over,
            "left_out": {reason: days for reason, days in self.left_out.items() if days},
            "kept": self.kept,
            "metrics": metrics,
            "assumptions": self.assumptions,
            "clocks": self.clock_report(),
            "previous": self.previous.import_id if self.previous else None,
        }

    def dropped(self) -> dict:
        counts: dict[str, int] = {}
        for entry in self.report()["metrics"]:
            copies = sum(entry["copies_dropped"].values())
            if copies:
                counts[f"{entry['metric']}: copy in another folder"] = copies
            if entry["health_connect_dropped"]:
                counts[f"{entry['metric']}: Health Connect re-export"] = entry["health_connect_dropped"]
            if entry["repeated"]:
                counts[f"{entry['metric']}: same record in an earlier file"] = entry["repeated"]
            if entry["no_value"]:
                counts[f"{entry['metric']}: Fitbit's no-value marker"] = entry["no_value"]
        return counts

    def close(self) -> None:
        self.archive.close()
        if self.stage_dir is not None:
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.stage_dir = None


def open_import(
    conn: psycopg.Connection,
    path: Path,
    user_id: int,
    timezone: str | None,
    clocks: list[str] | None = None,
    force: bool = False,
) -> ImportPlan:
    """Check the participant, open the archive, recognise its layout and hash it. Raises BadInput,
    also for an archive on record for another participant (unless `force`): one person's history
    loaded under two ids is a mix-up, not a second export."""
    user = list_users(conn, [user_id])[0]
    if user.withdrawn_at:
        raise BadInput(f"participant {user_id} withdrew; nothing is imported for them")
    if timezone:
        validate_timezone(timezone)
    overrides = parse_overrides(clocks)
    archive = Archive(Path(path))
    try:
        sha256 = archive.sha256()
        row = conn.execute(
            "SELECT import_id, imported_at, run_id FROM takeout_imports WHERE user_id = %s AND sha256 = %s "
            "AND status = 'done' ORDER BY import_id DESC LIMIT 1",
            (user_id, sha256),
        ).fetchone()
        other = conn.execute(
            "SELECT user_id, import_id FROM takeout_imports WHERE sha256 = %s AND user_id <> %s "
            "ORDER BY import_id LIMIT 1",
            (sha256, user_id),
        ).fetchone()
        if other and not (force or row):
            raise BadInput(
                f"archive {sha256[:12]} was imported for participant {other[0]} (import {other[1]}); an archive "
                f"holds one person's data: check --user, or give --force to import it for participant {user_id} too"
            )
    except BaseException:
        archive.close()
        raise
    conn.commit()
    return ImportPlan(user, archive, sha256, timezone, Previous(*row) if row else None, clock_overrides=overrides)


def index_archive(plan: ImportPlan, *, stage: bool, on_file: Callable[[int, int, Member], None] | None = None) -> None:
    """Read the whole archive once; with `stage`, keep each day's records on disk for the load."""
    if stage:
        plan.stage_dir = make_stage_dir(plan.user.user_id)
    zone_on = (lambda day: plan.timezone) if plan.timezone else plan.user.zone_on
    plan.clocks = decide(plan.archive, zone_on, plan.clock_overrides)
    clocks = {family: decision.clock for family, decision in plan.clocks.items()}
    indexer = Indexer(plan.archive, plan.user, Stage(plan.stage_dir), plan.timezone, clocks)
    plan.index = indexer.run(on_file)
    # Links and special files in a folder are named, never read: their content may be anything.
    plan.index.files_skipped[:0] = [{"file": name, "reason": reason} for name, reason in plan.archive.not_read]
    days = plan.index.days
    if days:
        last = last_complete_day(plan.user)
        spans = _spans(days)
        main = max(spans, key=lambda span: (len(span), span[-1]))
        stray = [d for span in spans if span is not main for d in span]
        # The night before the study's first day ends on it: its night metrics (filed under the
        # night's first day) belong to the study.
        from_day = plan.user.study_start - dt.timedelta(days=1)
        before_study = [d for d in days if d < from_day and d not in stray]
        recorded = set(days)
        plan.left_out = {STRAY: stray, BEFORE_STUDY: before_study}
        # Days inside a span without records are empty days of the archive: they load as empty.
        # Never the years between spans: one stray record dated 1900 must not plan 45,000 days.
        planned = [
            d
            for span in (spans if plan.all_days else [main])
            for d in days_between(span[0], span[-1])
            if plan.all_days or d >= plan.user.study_start or (d == from_day and d in recorded)
        ]
        plan.days = [d for d in planned if d <= last]
        plan.not_over = [d for d in planned if d > last]
    plan.assumptions = _assumptions(plan)


def keep_days_a_damaged_file_would_empty(conn: psycopg.Connection, plan: ImportPlan) -> None:
    """Leave out of the load each day whose file of some metric could not be read (damaged,
    malformed, 'no data') where the archive has no other records of that metric for the day but
    the database has rows: loading the day would replace good rows with nothing."""
    index = plan.indexed
    winners = index.winners()
    unreadable: dict[tuple[str, dt.date], list[str]] = collections.defaultdict(list)
    members = {m.path: m for m in plan.archive.members}
    for skipped in index.files_skipped:
        member = members.get(skipped["file"])
        family = family_of(member)[0] if member else None
        day = file_day(member) if member and family else None
        if member is None or family is None or day is None:
            continue
        if (family.kind, day) not in winners and day in plan.days:
            unreadable[(metric_name(family.kind), day)].append(f"{member.name}: {skipped['reason']}")
    if not unreadable:
        return
    on_file = conn.execute(
        "SELECT day, rows_by_metric FROM ingested_days WHERE user_id = %s AND day = ANY(%s)",
        (plan.user.user_id, sorted({day for _, day in unreadable})),
    ).fetchall()
    conn.commit()
    rows_on_file = {day: rows or {} for day, rows in on_file}
    for (metric, day), files in sorted(unreadable.items(), key=lambda item: (item[0][1], item[0][0])):
        rows = int(rows_on_file.get(day, {}).get(metric, 0))
        if rows:
            plan.kept.setdefault(day, []).append(f"keeps its {rows:,} {metric} row(s): {'; '.join(files)}")
    plan.days = [d for d in plan.days if d not in plan.kept]


# Records this many days away from the rest of the archive form a span of their own; only the
# span with the most days is loaded unless --all-days.
STRAY_GAP_DAYS = 366
STRAY = "far outside the archive's span"
BEFORE_STUDY = "before the participant's study start"


def _spans(days: list[dt.date]) -> list[list[dt.date]]:
    """The archive's days (sorted) cut where two neighbours lie more than STRAY_GAP_DAYS apart."""
    spans = [[days[0]]]
    for previous, day in itertools.pairwise(days):
        if (day - previous).days > STRAY_GAP_DAYS:
            spans.append([])
        spans[-1].append(day)
    return spans


def _zone_description(plan: ImportPlan) -> str:
    if plan.timezone:
        return f"{plan.timezone} (--timezone)"
    zones = sorted({zone for _, zone in plan.user.zones} or {plan.user.timezone})
    return f"the participant's timezone history ({', '.join(zones)})"


def _known_zone(name: str | None) -> str | None:
    """Profile.csv's zone when it is a zone name; anything else in that cell is not repeated."""
    try:
        return validate_timezone(name) if name else None
    except BadInput:
        return None


def _assumptions(plan: ImportPlan) -> list[str]:
    index, found = plan.indexed, []
    won: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (kind, _), key in index.winners().items():
        won[key[2]][metric_name(kind)] += 1
    for family, decision in sorted(plan.clocks.items()):
        # The documented default, where the evidence was silent, matters only for the days the family loads.
        if decision.by == "default" and won[family]:
            kind = "Global Export Data JSON" if _ORIGIN[family].startswith("Global Export Data") else "CSV"
            found.append(
                f"{kind} times ({_ORIGIN[family]}) read as {decision.clock} "
                + (f"wall time in {_zone_description(plan)}" if decision.clock == "local" else "instants")
                + ", the archive not settling their clock (no UTC twin, DST signature or sleep agreement): "
                + ", ".join(f"{metric} on {n} day(s)" for metric, n in sorted(won[family].items()))
            )
    if plan.timezone:
        found.append(
            f"ISO local times (no zone) read in {plan.timezone} (--timezone), not in the participant's timezone history"
        )
    profile_zone = _known_zone(index.profile_timezone)
    if profile_zone and (profile_zone != (plan.timezone or plan.user.timezone)):
        found.append(
            f"Profile.csv names the time zone {profile_zone}; local times were read in {_zone_description(plan)}"
        )
    return found


def _days_plan(plan: ImportPlan, force: bool) -> Plan:
    user = replace(plan.user, source=SOURCE, settings={})
    source = TakeoutSource(Stage(plan.stage_dir))
    # Imports never skip settled days: a newer archive replaces the days it covers. A day whose
    # content is unchanged is left untouched (same content hash), unless forced: then, like
    # `backfill --force`, every day is rewritten, which repairs rows changed outside fitpipe.
    tasks = [Task(user, day, skip_if_done=False, rewrite_unchanged=force, source=source) for day in plan.days]
    arguments = {"archive": str(plan.archive.path), "sha256": plan.sha256, "users": [plan.user.user_id]}
    return Plan("import", tasks, arguments)


@dataclass
class ImportResult:
    """An import's run (with its refresh and outcome) and the takeout_imports row that records it."""

    run: RunResult
    import_id: int


def load(
    conn: psycopg.Connection,
    plan: ImportPlan,
    *,
    url: str,
    workers: int | None = None,
    progress: Progress | None = None,
    force: bool = False,
    refresh: bool = True,
    count_attention: bool = False,
    days_plan: Plan | None = None,
) -> ImportResult:
    """Load the staged days through the pipeline (each day atomic), then record the import."""
    result = run(
        conn,
        days_plan or _days_plan(plan, force),
        url=url,
        workers=workers,
        progress=progress,
        refresh=refresh,
        count_attention=count_attention,
        retry_hint="import the archive again to finish",
    )
    return ImportResult(result, _record(conn, plan, result.summary))


@dataclass
class ImportOutcome:
    """What `fitpipe import` did: nothing (already on record, or a dry run), or a load."""

    sha256: str
    previous: Previous | None
    report: dict | None = None  # what the archive holds; None when it was not read
    loaded: ImportResult | None = None

    def problem(self):
        return self.loaded.run.problem() if self.loaded else None


def import_archive(
    conn: psycopg.Connection,
    path: Path,
    user_id: int,
    *,
    url: str,
    timezone: str | None = None,
    clocks: list[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
    all_days: bool = False,
    workers: int | None = None,
    refresh: bool = True,
    count_attention: bool = False,
    on_file: Callable[[int, int, Member], None] | None = None,
    on_report: Callable[[dict], None] | None = None,
    on_plan: Callable[[Plan], Progress | None] | None = None,
) -> ImportOutcome:
    """Import an archive exactly once: an archive on record does nothing unless `force`; a dry run
    reads it and reports. Hooks: on_file while reading, on_report once read, on_plan before loading."""
    plan = open_import(conn, path, user_id, timezone, clocks, force=force)
    plan.all_days = all_days
    try:
        outcome = ImportOutcome(plan.sha256, plan.previous)
        if plan.previous and not force and not dry_run:
            return outcome
        # A dry run stages too: records repeated across files are found by comparing staged days,
        # so its listing counts what the import would load.
        index_archive(plan, stage=True, on_file=on_file)
        keep_days_a_damaged_file_would_empty(conn, plan)
        outcome.report = plan.report()
        if on_report:
            on_report(outcome.report)
        if dry_run:
            return outcome
        days_plan = _days_plan(plan, force)
        progress = on_plan(days_plan) if on_plan else None
        outcome.loaded = load(
            conn,
            plan,
            url=url,
            workers=workers,
            progress=progress,
            force=force,
            refresh=refresh,
            count_attention=count_attention,
            days_plan=days_plan,
        )
        return outcome
    finally:
        plan.close()


def _record(conn: psycopg.Connection, plan: ImportPlan, summary: RunSummary) -> int:
    # A day held by another run (busy) or deferred was not loaded from this archive: importing again finishes it.
    complete = summary.status == "ok" and all(o.status in ("loaded", "unchanged") for o in summary.outcomes)
    status = "done" if complete and len(summary.outcomes) == len(plan.days) else "partial"
    settings = {
        "archive": {
            "path": str(plan.archive.path),
            "sha256": plan.sha256,
            "layout": plan.indexed.layout,
            "first_day": str(plan.first_day),
            "last_day": str(plan.last_day),
            "assumptions": plan.assumptions,
            "clocks": plan.clock_report(),
        }
    }
    with conn.transaction():
        import_id = one_row(
            conn.execute(
                """
            INSERT INTO takeout_imports (user_id, sha256, path, layout, trees, first_day, last_day, files_used,
                                         files_skipped, assumptions, rows_by_metric, dropped, run_id, status, clocks)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING import_id
            """,
                (
                    plan.user.user_id,
                    plan.sha256,
                    str(plan.archive.path),
                    plan.indexed.layout,
                    json.dumps(plan.indexed.trees),
                    plan.first_day,
                    plan.last_day,
                    json.dumps(plan.indexed.files_used),
                    json.dumps(plan.indexed.files_skipped),
                    json.dumps(plan.assumptions),
                    json.dumps(summary.rows_by_metric()),
                    json.dumps(plan.dropped()),
                    summary.run_id,
                    status,
                    json.dumps(plan.clock_report()),
                ),
            )
        )[0]
        # The archive is this source's credential: on file now. Settings keep no secrets, only where it came from.
        conn.execute(
            """
            INSERT INTO participant_sources (user_id, source, settings, credential_state, credential_note)
            VALUES (%s, %s, %s, 'ok', %s)
            ON CONFLICT (user_id, source) DO UPDATE SET settings = participant_sources.settings || excluded.settings,
                credential_state = 'ok', credential_note = excluded.credential_note, updated_at = now()
            """,
            (
                plan.user.user_id,
                SOURCE,
                json.dumps(settings),
                f"archive {plan.sha256[:12]} imported (import {import_id})",
            ),
        )
    return import_id
