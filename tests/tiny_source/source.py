"""The tiny source's declarations and fetch: a reading every few minutes, made from the settings
and the day, with no network, no credentials and no libraries beyond fitpipe."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fitpipe.sources.contract import Fetch, Source


@dataclass(frozen=True)
class TinySettings:
    """resting_bpm: the lowest reading of the day. every_minutes: minutes between readings."""

    resting_bpm: int = 58
    every_minutes: int = 30


class TinySource(Source):
    name = "tiny"
    credential_kind = "none"
    settle_days = 0
    settings = TinySettings
    produces = ("heart_rate", "heart_rate_daily")

    @classmethod
    def parsers(cls) -> Sequence:
        from tiny_source.parse import PARSERS

        return PARSERS

    def fetch_day(self, participant: Any, day: dt.date, fetch: Fetch) -> dict[str, Any]:
        resting = int(participant.settings.get("resting_bpm", TinySettings.resting_bpm))
        step = int(participant.settings.get("every_minutes", TinySettings.every_minutes))
        readings = [
            # A rise through the day and back, different on each day of the month.
            {"clock": f"{minute // 60:02d}:{minute % 60:02d}:00", "bpm": resting + (minute // 60) % 12 + day.day % 5}
            for minute in range(0, 24 * 60, step)
        ]
        return {"readings": readings, "summary": {"date": day.isoformat(), "resting": resting}}
