"""Rich tables for the CLI. Kept apart so library modules never print."""

from __future__ import annotations

from collections.abc import Iterable


def users_table(users: Iterable) -> object:
    from rich.table import Table

    table = Table(title="participants")
    for column in ("id", "name", "timezone", "source", "settings", "study start"):
        table.add_column(column)
    for u in users:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(u.settings.items()))
        table.add_row(str(u.user_id), u.display_name, u.timezone, u.source, settings, u.study_start.isoformat())
    return table


def participants_table(rows: list[dict]) -> object:
    from rich.table import Table

    table = Table(title="participants")
    for column in ("id", "name", "source", "timezone (from)", "study start", "credentials", "withdrawn"):
        table.add_column(column)
    for r in rows:
        zones = "; ".join(f"{z['timezone']} ({z['from']})" for z in r["timezone_history"] or [])
        table.add_row(
            str(r["user_id"]),
            r["display_name"],
            r["source"],
            zones,
            str(r["study_start"]),
            r["credential_state"] or "-",
            str(r["withdrawn_at"] or "-"),
        )
    return table


def _whole(column: str, ids: list[str]) -> dict:
    """Column options that never cut a value: on a narrow terminal long values fold onto more
    lines instead of ending in "…", and the id column is never narrower than its widest id."""
    options: dict = {"overflow": "fold"}
    if column == "id":
        options["min_width"] = max([len(i) for i in ids] + [2])
    return options


def status_tables(report: dict) -> list:
    from rich.table import Table

    users = Table(title="ingestion per participant")
    for column in (
        "id",
        "timezone",
        "start",
        "cursor",
        "last day",
        "complete",
        "empty",
        "provisional",
        "deferred",
        "missing",
        "after gap",
        "quarantined",
        "rollup only",
        "credentials",
    ):
        users.add_column(column, **_whole(column, [str(u["user_id"]) for u in report["users"]]))
    for u in report["users"]:
        users.add_row(
            str(u["user_id"]),
            u["timezone"],
            str(u["study_start"]),
            str(u["cursor"] or "-"),
            str(u["last_ingested"] or "-"),
            str(u["states"]["complete"]),
            str(u["states"]["empty"]),
            str(u["states"]["provisional"]),
            str(u["states"]["deferred"]),
            str(len(u["missing_days"])),
            str(u["days_after_gap"]),
            str(u["quarantined"]),
            str(u["rollup_only"]["days"]),
            u["credentials"] + (" (withdrawn)" if u["withdrawn"] else "") if u["credentials"] else "-",
        )
    rows = Table(title="rows per metric")
    rows.add_column("metric", overflow="fold")
    # One column per participant while that fits on a screen; a total otherwise.
    per_user = len(report["users"]) <= 5
    for u in report["users"] if per_user else []:
        rows.add_column(f"user {u['user_id']}", justify="right", no_wrap=True)
    rows.add_column("total", justify="right", no_wrap=True)
    for name in report["metrics"]:
        counts = [u["rows"].get(name, 0) for u in report["users"]]
        rows.add_row(name, *(f"{c:,}" for c in (counts if per_user else [])), f"{sum(counts):,}")
    tables = [users, rows, storage_table(report.get("storage", []))]
    missing = [(u["user_id"], u["missing_days"]) for u in report["users"] if u["missing_days"]]
    for user_id, days in missing[:20]:
        shown = ", ".join(str(d) for d in days[:8]) + (f" ... ({len(days)} days)" if len(days) > 8 else "")
        tables.append(f"user {user_id} is missing {shown}")
    for u in report["users"]:
        only = u["rollup_only"]
        if only["days"]:
            tables.append(
                f"user {u['user_id']} has rollups only (raw 1 Hz rows dropped by retention) for "
                f"{only['days']} day(s) from {only['first']} to {only['last']}"
            )
    tables.extend(device_lines(report["users"]))
    for u in report["users"]:
        if u["credentials"] in ("missing", "needs_reconsent") and not u["withdrawn"]:
            tables.append(f"user {u['user_id']} credentials {u['credentials']}: {u.get('credential_note') or '-'}")
    last = report.get("last_run")
    if last:
        tables.append(
            f"last run: {last['run_id']} {last['command']} [bold]{last['status']}[/bold], started "
            f"{last['started_at']:%Y-%m-%d %H:%M:%S %Z}, {last['user_days']} user-days, {last['rows_loaded']:,} rows, "
            f"{last['quarantined']} quarantined, {last['failed']} failed"
        )
    from fitpipe.sources import registered_classes

    for source in registered_classes():
        tables.extend(source.status_lines(report))
    return tables


def device_lines(users: list[dict]) -> list[str]:
    """Per participant with paired devices: each one's last sync and battery, and the days missing
    although the device synced past them."""
    lines = []
    for u in users:
        for d in u.get("devices", []):
            synced = f"{d['last_sync_time']:%Y-%m-%d %H:%M %Z}" if d["last_sync_time"] else "never"
            battery = f"{d['battery_level']}%" if d["battery_level"] is not None else d["battery_status"] or "unknown"
            name = d["device_version"] or d["device"]
            lines.append(f"user {u['user_id']} device {name}: last sync {synced}, battery {battery}")
        days = u.get("missing_after_sync", [])
        if days:
            shown = ", ".join(str(d) for d in days[:8]) + (f" ... ({len(days)} days)" if len(days) > 8 else "")
            lines.append(f"user {u['user_id']} has no data although the device synced past: {shown}")
    return lines


def retention_lines(report) -> list[str]:
    """What `maintain --raw-retention-days` dropped and kept; nothing when the setting is off."""
    if report is None:
        return []
    if report.cutoff is None:
        return [f"raw retention ({report.days} days): no enrolled participant has settled days yet; nothing dropped"]
    tables = ", ".join(report.tables) or "the 1 Hz raw tables"
    lines = [
        f"raw retention ({report.days} days): dropped {report.chunks_dropped} chunk(s) of {tables} before "
        f"{report.cutoff:%Y-%m-%d %H:%M %Z}, {report.bytes_freed:,} bytes freed; "
        f"{report.days_marked} participant-day(s) now have rollups only"
    ]
    return lines + report.kept


def storage_table(storage: list[dict]):
    from rich.table import Table

    table = Table(title="storage per table (compressed: community edition, `fitpipe maintain`)")
    for column in ("table", "bytes", "uncompressed", "compressed", "before compression", "ratio"):
        table.add_column(column, justify="left" if column == "table" else "right", no_wrap=True)
    for row in storage:
        table.add_row(
            row["table"],
            f"{row['bytes']:,}",
            f"{row['uncompressed_bytes']:,}",
            f"{row['compressed_bytes']:,}",
            f"{row['before_compression_bytes']:,}",
            f"{row['ratio']}x" if row["ratio"] else "-",
        )
    return table


def adherence_table(as_of, rows: list[dict], flags: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=f"adherence as of {as_of} (worst first)")
    for column in ("id", "participant", "wear", "worn h", "hours since data", "nights (of 7)", "flags"):
        table.add_column(column, **_whole(column, [str(r["user_id"]) for r in rows]))
    for row in rows:
        raised = [f.removeprefix("flag_").replace("_", " ") for f in flags if row[f]]
        hours = "-" if row["hours_since_data"] is None else f"{row['hours_since_data']:.0f}"
        if row.get("ended"):
            # Measured over their own window: hours and nights count back from its last day.
            hours += f" (data ended {row['window_end']})"
        table.add_row(
            str(row["user_id"]),
            row["display_name"],
            f"[red]{row['wear_share']:.0%}[/red]" if row["flag_low_wear"] else f"{row['wear_share']:.0%}",
            f"{row['worn_minutes'] / 60:,.0f}",
            f"[red]{hours}[/red]" if row["flag_no_recent_data"] else hours,
            f"[red]{row['nights_captured']}[/red]" if row["flag_low_sleep_capture"] else str(row["nights_captured"]),
            "[bold red]" + ", ".join(raised) + "[/bold red]" if raised else "[green]ok[/green]",
        )
    return table


def import_listing(report: dict) -> list:
    """What `fitpipe import` found in an archive: layout, metrics with files, span and records,
    what it skips and why, and the time-zone assumptions."""
    from rich.markup import escape
    from rich.table import Table

    lines: list = [
        f"archive {escape(report['path'])} ({report['kind']}, sha256 {report['sha256'][:12]}): layout "
        f"[bold]{report['layout']}[/bold], {report['layout_description']}"
        + (f"; trees: {', '.join(report['trees'])}" if len(report["trees"]) > 1 else ""),
    ]
    if report["previous"]:
        lines.append(f"this archive is on record already (import {report['previous']})")
    table = Table(
        title=f"what it holds: {report['first_day'] or '-'} .. {report['last_day'] or '-'}, "
        f"{report['days']} day(s) to load"
    )
    for column in ("metric", "records read", "first", "last", "from", "not loaded"):
        table.add_column(column, no_wrap=column != "from")
    for m in report["metrics"]:
        dropped = [f"{n:,} copies in {escape(origin)}" for origin, n in m["copies_dropped"].items()]
        if m["health_connect_dropped"]:
            dropped.append(f"{m['health_connect_dropped']:,} Health Connect re-exports")
        if m.get("repeated"):
            dropped.append(f"{m['repeated']:,} repeated in another file")
        if m.get("no_value"):
            dropped.append(f"{m['no_value']:,} no-value markers")
        table.add_row(
            m["metric"],
            f"{m['records']:,}",
            str(m["first"] or "-"),
            str(m["last"] or "-"),
            "; ".join(f"{escape(origin)} ({n:,})" for origin, n in m["from"].items()) or "-",
            "; ".join(dropped) or "-",
        )
    lines.append(table)
    lines.append(
        f"files: {report['files']:,} in the archive, {report['files_used']:,} read, {report['files_skipped']:,} skipped"
    )
    for reason, n in report["skipped_reasons"].items():
        lines.append(f"  skipped {n:,} file(s): {escape(reason)}")
    if report["not_over"]:
        lines.append(
            f"left out {len(report['not_over'])} day(s) not over yet: {report['not_over'][0]} .. "
            f"{report['not_over'][-1]}"
        )
    for clock in report.get("clocks", {}).values():
        lines.append(
            f"clock of {escape(clock['origin'])}: [bold]{clock['clock']}[/bold] (by {clock['by']}: "
            f"{escape(clock['figure'])})"
        )
    for reason, days in report.get("left_out", {}).items():
        lines.append(
            f"left out {len(days)} day(s) with records {reason}: {days[0]} .. {days[-1]} (--all-days loads them)"
        )
    for day, reasons in report.get("kept", {}).items():
        for reason in reasons:
            lines.append(f"[yellow]day {day} left as it was:[/yellow] it {escape(reason)}")
    for assumption in report["assumptions"]:
        lines.append(f"[yellow]assumption:[/yellow] {escape(assumption)}")
    return lines
