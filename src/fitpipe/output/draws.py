"""`fitpipe export --draws M` and `Store.frame(..., draws=M)`: M complete 1-minute series per participant.

Columns: user_id, bucket, draw (1..M), the metric's value columns, imputed. Rows are ordered by
participant, draw, time, so each draw is one complete series; measured minutes repeat unchanged
in every draw. Written one participant at a time (memory holds one participant's M series), as
CSV or as Parquet (one row group per participant, bucket as UTC instants). Draws exist at 1 minute
only: a draw of an hourly or daily value is an aggregate of a draw's minutes, which the analyst
computes per draw before pooling.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import numpy as np
import pandas as pd
import psycopg

from fitpipe.derive.draws import check_request, user_draws
from fitpipe.errors import BadInput
from fitpipe.output.export import ExportResult, query_params
from fitpipe.output.target import check_target, open_target
from fitpipe.participants import User, list_users


def new_seed() -> int:
    """A seed for a caller who gave none; it is reported so the draws can be made again."""
    return secrets.randbelow(2**31)


def _in_zones(frame: pd.DataFrame, user: User, tz: str) -> pd.DataFrame:
    """bucket as tz-aware times: UTC, or the participant's zone at each minute (object dtype if several)."""
    utc = pd.DatetimeIndex(frame["bucket"]).tz_convert("UTC") if len(frame) else pd.DatetimeIndex([], tz="UTC")
    if tz == "utc" or not len(frame):
        frame["bucket"] = utc
        return frame
    spans = user.zone_spans(utc.min().to_pydatetime(), utc.max().to_pydatetime() + dt.timedelta(minutes=1))
    if len(spans) == 1:
        frame["bucket"] = utc.tz_convert(spans[0][0])
        return frame
    local = np.array(list(utc), dtype=object)
    for zone, lo, hi in spans:
        inside = np.asarray((utc >= pd.Timestamp(lo)) & (utc < pd.Timestamp(hi)))
        local[inside] = list(utc[inside].tz_convert(zone))
    frame["bucket"] = local
    return frame


def iter_draws(
    conn: psycopg.Connection,
    *,
    metric_name: str,
    user_ids: Sequence[int] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    draws: int,
    seed: int,
    tz: str = "utc",
) -> Iterator[pd.DataFrame]:
    metric = check_request(metric_name, draws)
    if tz not in ("utc", "local"):
        raise BadInput(f"--tz must be utc or local, got {tz!r}")
    if start and end and end < start:
        raise BadInput(f"--end {end} is before --start {start}")
    users = list_users(conn, user_ids)
    conn.commit()
    for user in users:
        params = query_params(user, metric, start, end, "1min")
        frame = user_draws(conn, user, metric, params["lo"], params["hi"], draws, seed)
        conn.commit()
        yield _in_zones(frame, user, tz)


def _write_csv(frames: Iterator[pd.DataFrame], out: BinaryIO) -> int:
    rows = 0
    header = True
    for frame in frames:
        if not len(frame) and not header:
            continue
        text = frame.assign(
            bucket=[t.isoformat() for t in frame["bucket"]], imputed=frame["imputed"].map({True: "t", False: "f"})
        ).to_csv(index=False, header=header, lineterminator="\n")
        out.write(text.encode())
        rows += len(frame)
        header = False
    return rows


def _write_parquet(frames: Iterator[pd.DataFrame], out: BinaryIO, value_columns: Sequence[str]) -> int:
    """One row group per participant; bucket as UTC instants, like every Parquet export."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("user_id", pa.int32()),
            ("bucket", pa.timestamp("us", tz="UTC")),
            ("draw", pa.int32()),
            *[(name, pa.float64()) for name in value_columns],
            ("imputed", pa.bool_()),
        ]
    )
    rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for frame in frames:
            if len(frame):
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                rows += len(frame)
    return rows


def export_draws(
    conn: psycopg.Connection,
    *,
    metric_name: str,
    user_ids: Sequence[int] = (),
    start: dt.date | None = None,
    end: dt.date | None = None,
    draws: int | None,
    seed: int | None,
    tz: str = "utc",
    output: str = "-",
    resolution: str = "auto",
    fmt: str = "csv",
) -> ExportResult:
    """Checked before any work: --seed needs --draws, draws are 1-minute series, Parquet needs a file."""
    import sys

    if draws is None:
        raise BadInput("--seed goes with --draws")
    if resolution not in ("auto", "1min"):
        raise BadInput(
            f"--draws gives 1-minute series, not {resolution}: aggregate each draw yourself "
            "(a mean over a draw's minutes), then pool with Rubin's rules"
        )
    if fmt not in ("csv", "parquet"):
        raise BadInput(f"--format must be csv or parquet, got {fmt!r}")
    if fmt == "parquet" and output == "-":
        raise BadInput("--format parquet needs --output FILE (a Parquet file ends with its index)")
    metric = check_request(metric_name, draws)
    if seed is None:
        seed = new_seed()
    target = None if output == "-" else check_target(output, "--output")
    if tz not in ("utc", "local"):
        raise BadInput(f"--tz must be utc or local, got {tz!r}")
    # Parquet holds UTC instants whatever --tz says (as in every Parquet export).
    zone = "utc" if fmt == "parquet" else tz
    frames = iter_draws(
        conn, metric_name=metric_name, user_ids=user_ids, start=start, end=end, draws=draws, seed=seed, tz=zone
    )
    note = f"{draws} draws, seed {seed}"
    if target is None:
        if sys.stdout is None:
            raise BadInput("standard output is closed; give --output FILE")
        rows = _write_csv(frames, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return ExportResult("1min", rows, note)
    with open_target(target) as out:
        if fmt == "parquet":
            rows = _write_parquet(frames, out, [c.name for c in metric.values])
        else:
            rows = _write_csv(frames, out)
        if rows == 0 and not target.write_through:
            raise BadInput(f"no {metric_name} minutes in the range; nothing written")
    return ExportResult("1min", rows, note)
