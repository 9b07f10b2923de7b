"""The tiny source's payloads as rows: one parser per table it produces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fitpipe.catalogue import BY_NAME
from fitpipe.days import DayContext
from fitpipe.ingest.validate import ParsedDay, RowBuilder


def parse_readings(payloads: Mapping[str, Any], ctx: DayContext, parsed: ParsedDay) -> None:
    builder = RowBuilder(ctx, BY_NAME["heart_rate"], parsed)
    for reading in payloads.get("readings", []):
        try:
            builder.add(f"{ctx.day.isoformat()}T{reading['clock']}", {"bpm": reading["bpm"]}, reading)
        except (KeyError, TypeError):
            builder.quarantine(reading, "malformed record")
    builder.finish()


def parse_summary(payloads: Mapping[str, Any], ctx: DayContext, parsed: ParsedDay) -> None:
    builder = RowBuilder(ctx, BY_NAME["heart_rate_daily"], parsed)
    summary = payloads.get("summary")
    if summary:
        builder.add(summary.get("date"), {"resting_bpm": summary.get("resting")}, summary)
    builder.finish()


PARSERS = (parse_readings, parse_summary)
