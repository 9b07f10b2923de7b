"""The CLI's options, declared once as typed aliases, and its choices as Enums (typer validates them)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from fitpipe.sources import registered


class Resolution(StrEnum):
    raw = "raw"
    one_minute = "1min"
    one_hour = "1h"
    one_day = "1d"
    auto = "auto"


class ImputeMethod(StrEnum):
    profile = "profile"
    linear = "linear"
    statespace = "statespace"


class TimeMode(StrEnum):
    utc = "utc"
    local = "local"


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


# Checked by the registry, so a source registered at run time is accepted too.
SourceName = Annotated[
    str, typer.Option(..., "--source", help=f"Where the participant's data comes from: {', '.join(registered())}.")
]

Users = Annotated[list[int] | None, typer.Option("--user", help="Only this participant id (repeatable). Default: all.")]
Start = Annotated[str | None, typer.Option("--start", help="First local day, YYYY-MM-DD.")]
End = Annotated[str | None, typer.Option("--end", help="Last local day (inclusive), YYYY-MM-DD.")]
RequiredStart = Annotated[str, typer.Option("--start", help="First local day, YYYY-MM-DD.")]
RequiredEnd = Annotated[str, typer.Option("--end", help="Last local day (inclusive), YYYY-MM-DD.")]
MetricsFile = Annotated[Path | None, typer.Option("--metrics-file", help="Write Prometheus metrics to this textfile.")]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="Parallel processes. Default: number of CPUs.")]
Refresh = Annotated[bool, typer.Option("--refresh/--no-refresh", help="Refresh the rollups of what changed.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="Print errors only.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Yes = Annotated[bool, typer.Option("--yes", help="Do it without asking.")]
MaxWait = Annotated[
    float,
    typer.Option(
        "--max-wait",
        min=0,
        help="Wait out a source's retry-later up to this many "
        "seconds within the run; longer waits defer the day to a later run.",
    ),
]
