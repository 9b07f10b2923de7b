"""The one catalogue of metrics.

Every metric table is declared here once: its columns and types, valid ranges, which rows a
local day owns, and how it rolls up. Parsing (validation), loading (COPY and the per-day
delete), status, rollups, imputation and export all read these declarations. The SQL in
migrations/ creates the same tables; tests/test_schema.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DayWindow(Enum):
    """Which rows belong to local day D, so a re-ingest of D replaces exactly them."""

    # [D 00:00, D+1 00:00) local: the calendar day (23 or 25 hours on DST days).
    CALENDAR = "calendar"
    # [D 12:00, D+1 12:00) local: the night that starts on the evening of D. wearipedia's sleep
    # starts between 21:00 and 03:00 and lasts at most 10 hours, so a night never straddles two windows
    # and consecutive days can never collide on a key.
    NIGHT = "night"
    # Rows keyed by the date itself (daily summaries).
    DATE = "date"


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    description: str = ""
    # For text columns: the values the table accepts (its CHECK constraint).
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    table: str
    time_column: str
    values: tuple[Column, ...]
    window: DayWindow
    resolution: str
    description: str
    # Extra key columns besides (user_id, time_column).
    extra_key: tuple[Column, ...] = ()
    # Rollups: per value column, 'mean' (average is the meaning) or 'sum' (totals are).
    rollup: str | None = None
    # Imputation fills missing minutes only where interpolating a level makes sense.
    imputable: bool = False

    @property
    def time_type(self) -> str:
        return "date" if self.window is DayWindow.DATE else "timestamptz"

    @property
    def columns(self) -> tuple[Column, ...]:
        """All columns in table order: user_id, time, extra key, values."""
        return (
            Column("user_id", "integer"),
            Column(self.time_column, self.time_type),
            *self.extra_key,
            *self.values,
        )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def intraday(self) -> bool:
        return self.rollup is not None

    @property
    def samples_per_minute(self) -> int:
        """How many raw samples a fully worn minute holds; an imputed minute stands in for that many."""
        return {"1s": 60, "1min": 1}.get(self.resolution, 1)

    def value(self, name: str) -> Column:
        for column in self.values:
            if column.name == name:
                return column
        raise KeyError(name)


def _real(name: str, low: float, high: float, description: str = "", nullable: bool = False) -> Column:
    return Column(name, "real", low, high, nullable, description)


def _small(name: str, low: float, high: float, description: str = "", nullable: bool = False) -> Column:
    return Column(name, "smallint", low, high, nullable, description)


METRICS: tuple[Metric, ...] = (
    Metric(
        "heart_rate",
        "heart_rate",
        "ts",
        (_real("bpm", 25, 250, "beats per minute"),),
        DayWindow.CALENDAR,
        "1s",
        "Heart rate while worn",
        rollup="mean",
        imputable=True,
    ),
    Metric(
        "active_zone_minutes",
        "active_zone_minutes",
        "ts",
        (
            _small("active_zone_minutes", 0, 3),
            _small("fat_burn_minutes", 0, 1),
            _small("cardio_minutes", 0, 1),
            _small("peak_minutes", 0, 1),
        ),
        DayWindow.CALENDAR,
        "1min",
        "Active zone minutes per minute",
        rollup="sum",
    ),
    Metric(
        "spo2",
        "spo2",
        "ts",
        (_real("spo2_pct", 70, 100, "percent"),),
        DayWindow.NIGHT,
        "1min",
        "Blood oxygen saturation during sleep",
        rollup="mean",
        imputable=True,
    ),
    Metric(
        "hrv_intraday",
        "hrv_intraday",
        "ts",
        (
            _real("rmssd", 0, 300, "ms"),
            # Nullable: the Google Health API does not report coverage (migration 0030).
            _real("coverage", 0, 1, nullable=True),
            _real("hf", 0, 20000, "ms^2"),
            _real("lf", 0, 20000, "ms^2"),
        ),
        DayWindow.NIGHT,
        "1min",
        "Heart-rate variability during sleep",
        rollup="mean",
        imputable=True,
    ),
    Metric(
        "breathing_rate",
        "breathing_rate",
        "day",
        tuple(
            _real(n, 4, 40, "breaths per minute", nullable=True)
            for n in ("full_sleep", "deep_sleep", "light_sleep", "rem_sleep")
        ),
        DayWindow.DATE,
        "night",
        "Breathing rate per night and sleep stage",
    ),
    Metric(
        "sleep_sessions",
        "sleep_sessions",
        "start_ts",
        (
            Column("end_ts", "timestamptz"),
            Column("date_of_sleep", "date"),
            Column("log_id", "bigint"),
            Column("is_main_sleep", "boolean"),
            Column("duration_s", "integer", 0, 24 * 3600),
            # Nullable: the Google Health API does not report efficiency (migration 0030).
            _small("efficiency", 0, 100, nullable=True),
            _small("minutes_asleep", 0, 1440),
            _small("minutes_awake", 0, 1440),
            _small("minutes_to_fall_asleep", 0, 1440),
            _small("minutes_after_wakeup", 0, 1440),
            _small("time_in_bed", 0, 1440),
        ),
        DayWindow.NIGHT,
        "session",
        "Sleep sessions",
    ),
    Metric(
        "sleep_stages",
        "sleep_stages",
        "start_ts",
        (Column("seconds", "integer", 0, 24 * 3600),),
        DayWindow.NIGHT,
        "segment",
        "Sleep stage segments",
        # The stage is part of the key: wearipedia starts two long segments at the same second.
        extra_key=(
            Column("is_short", "boolean"),
            Column("stage", "text", allowed=("wake", "light", "deep", "rem", "asleep", "restless", "awake")),
        ),
    ),
    Metric(
        "heart_rate_daily",
        "heart_rate_daily",
        "day",
        (
            _real("resting_bpm", 25, 150, nullable=True),
            *(_small(f"minutes_{z}", 0, 1500, nullable=True) for z in ("out_of_range", "fat_burn", "cardio", "peak")),
            *(_real(f"calories_{z}", 0, 1e6, nullable=True) for z in ("out_of_range", "fat_burn", "cardio", "peak")),
        ),
        DayWindow.DATE,
        "1d",
        "Daily heart-rate summary",
    ),
    Metric(
        "daily_activity",
        "daily_activity",
        "day",
        (
            Column("steps", "integer", 0, 100_000, True),
            _real("distance_km", 0, 200, nullable=True),
            *(
                _small(f"minutes_{k}", 0, 1500, nullable=True)
                for k in ("sedentary", "lightly_active", "fairly_active", "very_active")
            ),
        ),
        DayWindow.DATE,
        "1d",
        "Daily activity totals",
    ),
    Metric(
        "hrv_daily",
        "hrv_daily",
        "day",
        (_real("daily_rmssd", 0, 300, nullable=True), _real("deep_rmssd", 0, 300, nullable=True)),
        DayWindow.DATE,
        "1d",
        "Daily heart-rate variability",
    ),
    # Takeout carries these; the synthetic source does not (fitpipe import).
    Metric(
        "heart_rate_confidence",
        "heart_rate_confidence",
        "ts",
        (_small("confidence", 0, 3, "Fitbit confidence in the heart-rate sample"),),
        DayWindow.CALENDAR,
        "1s",
        "Device confidence per heart-rate sample",
    ),
    Metric(
        "data_sources",
        "data_sources",
        "day",
        (Column("samples", "integer", 0, 10_000_000),),
        DayWindow.DATE,
        "1d",
        "Where a day's rows came from",
        extra_key=(Column("metric", "text"), Column("origin", "text"), Column("data_source", "text")),
    ),
    Metric(
        # Only where the offset carries information: the device reported an offset other than the
        # participant's zone gives (travel not yet in the timezone history). See migration 0030.
        "device_utc_offsets",
        "device_utc_offsets",
        "day",
        (
            Column("points", "integer", 1, 10_000_000, description="data points reported at this offset"),
            Column("first_ts", "timestamptz", description="first of them"),
            Column("last_ts", "timestamptz", description="last of them"),
        ),
        DayWindow.DATE,
        "1d",
        "UTC offsets a device reported that differ from the participant's zone",
        extra_key=(Column("utc_offset_s", "integer", -50_400, 50_400),),
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
INTRADAY: tuple[Metric, ...] = tuple(m for m in METRICS if m.intraday)


def metric(name: str) -> Metric:
    from fitpipe.errors import BadInput

    try:
        return BY_NAME[name]
    except KeyError:
        raise BadInput(f"unknown metric {name!r}; known: {', '.join(BY_NAME)}") from None
