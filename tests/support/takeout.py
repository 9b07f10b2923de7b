"""A writer of small, deterministic Takeout archives of each layout generation, from known values,
in the documented formats (../shared/reference/real-sources.md section 3)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

UTC = dt.UTC
ROOTS = {1: "MyFitbitData/Alice", 2: "Takeout/Fitbit", 3: "Takeout/Google Health"}
GOOGLE_DATA = "Physical Activity_GoogleData"


def us(moment: dt.datetime) -> str:
    """Global Export Data's MM/DD/YY HH:MM:SS."""
    return moment.strftime("%m/%d/%y %H:%M:%S")


def iso_z(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_utc(local: dt.datetime, zone: str, fold: int = 0) -> dt.datetime:
    return local.replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


class TakeoutBuilder:
    """Files of one layout generation, written as a .zip or a folder."""

    def __init__(self, generation: int):
        self.generation = generation
        self.root = ROOTS[generation]
        self.files: dict[str, bytes] = {}

    def _folder(self, kind: str) -> str:
        if self.generation == 1:
            return {
                "global": "Physical Activity",
                "sleep": "Sleep",
                "hrv": "Sleep",
                "spo2": "Sleep",
                "azm": "Physical Activity",
                "google": GOOGLE_DATA,
            }[kind]
        return {
            "global": "Global Export Data",
            "sleep": "Global Export Data",
            "hrv": "Heart Rate Variability",
            "spo2": "Oxygen Saturation (SpO2)",
            "azm": "Active Zone Minutes (AZM)",
            "google": GOOGLE_DATA,
        }[kind]

    def put(self, folder: str, name: str, body: str | bytes, root: str | None = None) -> str:
        path = f"{root or self.root}/{folder}/{name}"
        self.files[path] = body.encode() if isinstance(body, str) else body
        return path

    @staticmethod
    def _csv(header: list[str], rows: list[list]) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return out.getvalue()

    # --- Global Export Data JSON (times: MM/DD/YY, no zone) --------------------------------------

    def heart_rate_json(self, name_day: dt.date, samples: list[tuple[dt.datetime, float, int]]) -> str:
        body = [{"dateTime": us(t), "value": {"bpm": bpm, "confidence": conf}} for t, bpm, conf in samples]
        return self.put(self._folder("global"), f"heart_rate-{name_day}.json", json.dumps(body))

    def steps_json(self, name_day: dt.date, samples: list[tuple[dt.datetime, str]]) -> str:
        body = [{"dateTime": us(t), "value": value} for t, value in samples]
        return self.put(self._folder("global"), f"steps-{name_day}.json", json.dumps(body))

    def resting_heart_rate_json(self, name_day: dt.date, values: list[tuple[dt.date, float]]) -> str:
        body = [
            {
                "dateTime": day.strftime("%m/%d/%y 00:00:00"),
                "value": {"date": day.strftime("%m/%d/%y"), "value": v, "error": 6.79},
            }
            for day, v in values
        ]
        return self.put(self._folder("global"), f"resting_heart_rate-{name_day}.json", json.dumps(body))

    def sleep_json(self, name_day: dt.date, logs: list[dict]) -> str:
        return self.put(self._folder("sleep"), f"sleep-{name_day}.json", json.dumps(logs))

    # --- CSVs with ISO local times ----------------------------------------------------------------

    def hrv_details(self, name_day: dt.date, rows: list[tuple[dt.datetime, float, float, float, float]]) -> str:
        return self.put(
            self._folder("hrv"),
            f"Heart Rate Variability Details - {name_day}.csv",
            self._csv(
                ["timestamp", "rmssd", "coverage", "low_frequency", "high_frequency"],
                [[t.strftime("%Y-%m-%dT%H:%M:%S"), r, c, lf, hf] for t, r, c, lf, hf in rows],
            ),
        )

    def hrv_daily(self, name_day: dt.date, rows: list[tuple[dt.date, float]]) -> str:
        return self.put(
            self._folder("hrv"),
            f"Daily Heart Rate Variability Summary - {name_day:%Y-%m-(%d)}.csv",
            self._csv(["timestamp", "rmssd", "nremhr", "entropy"], [[f"{d}T00:00:00", r, 49.6, 2.47] for d, r in rows]),
        )

    def respiratory_summary(self, name_day: dt.date, rows: list[tuple[dt.datetime, float, float, float, float]]) -> str:
        return self.put(
            self._folder("hrv"),
            f"Respiratory Rate Summary - {name_day}.csv",
            self._csv(
                [
                    "timestamp",
                    "full_sleep_breathing_rate",
                    "full_sleep_standard_deviation",
                    "deep_sleep_breathing_rate",
                    "light_sleep_breathing_rate",
                    "rem_sleep_breathing_rate",
                    "full_sleep_signal_to_noise",
                ],
                [[t.strftime("%Y-%m-%dT%H:%M:%S"), f, 0.5, d, low, r, 9.1] for t, f, d, low, r in rows],
            ),
        )

    def azm_csv(self, month: dt.date, rows: list[tuple[dt.datetime, str, int]]) -> str:
        return self.put(
            self._folder("azm"),
            f"Active Zone Minutes - {month:%Y-%m-01}.csv",
            self._csv(
                ["date_time", "heart_zone_id", "total_minutes"],
                [[t.strftime("%Y-%m-%dT%H:%M:%S"), zone, total] for t, zone, total in rows],
            ),
        )

    # --- CSVs with UTC times ----------------------------------------------------------------------

    def spo2_minutes(self, name_day: dt.date, rows: list[tuple[dt.datetime, float]]) -> str:
        return self.put(
            self._folder("spo2"),
            f"Minute SpO2 - {name_day}.csv",
            self._csv(["timestamp", "value"], [[iso_z(t), v] for t, v in rows]),
        )

    def heart_rate_csv(
        self, name_day: dt.date, rows: list[tuple[dt.datetime, float, str]], root: str | None = None
    ) -> str:
        return self.put(
            GOOGLE_DATA,
            f"heart_rate_{name_day}.csv",
            self._csv(["timestamp", "beats per minute", "data source"], [[iso_z(t), bpm, src] for t, bpm, src in rows]),
            root,
        )

    def steps_csv(self, name_day: dt.date, rows: list[tuple[dt.datetime, int]]) -> str:
        return self.put(
            GOOGLE_DATA,
            f"steps_{name_day}.csv",
            self._csv(["timestamp", "steps", "data source"], [[iso_z(t), s, "Pixel Watch 2"] for t, s in rows]),
        )

    def respiratory_sleep_csv(
        self, name_day: dt.date, rows: list[tuple[dt.datetime, float, float, float, float]]
    ) -> str:
        header = ["timestamp"]
        for stage in ("deep", "light", "rem", "full"):
            header += [
                f"{stage} sleep stats - milli breaths per minute",
                f"{stage} sleep stats - standard deviation milli breaths per minute",
                f"{stage} sleep stats - signal to noise",
            ]
        header.append("data source")
        rows_out = []
        for t, full, deep, light, rem in rows:
            row = [iso_z(t)]
            for value in (deep, light, rem, full):
                row += [value * 1000, 800, 9.0]
            rows_out.append([*row, "Pixel Watch 2"])
        return self.put(GOOGLE_DATA, f"respiratory_rate_sleep_summary_{name_day}.csv", self._csv(header, rows_out))

    # --- output -----------------------------------------------------------------------------------

    def write_zip(self, path: Path) -> Path:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, body in sorted(self.files.items()):
                archive.writestr(name, body)
        return path

    def write_folder(self, path: Path) -> Path:
        for name, body in self.files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        return path


def sleep_log(
    log_id: int,
    start_local: dt.datetime,
    segments: list[tuple[str, int]],
    *,
    main: bool = True,
    short: list[tuple[dt.datetime, str, int]] = (),
) -> dict:
    """A sleep-*.json log. Its times are local wall times that keep the offset of the session's start,
    so segment times are simply start + elapsed seconds (no DST jump inside)."""
    data, at = [], start_local
    for level, seconds in segments:
        data.append({"dateTime": at.strftime("%Y-%m-%dT%H:%M:%S.000"), "level": level, "seconds": seconds})
        at += dt.timedelta(seconds=seconds)
    total = sum(s for _, s in segments)
    return {
        "logId": log_id,
        "dateOfSleep": at.date().isoformat(),
        "startTime": start_local.strftime("%Y-%m-%dT%H:%M:%S.000"),
        "endTime": at.strftime("%Y-%m-%dT%H:%M:%S.000"),
        "duration": total * 1000,
        "minutesToFallAsleep": 0,
        "minutesAsleep": total // 60 - 10,
        "minutesAwake": 10,
        "minutesAfterWakeup": 0,
        "timeInBed": total // 60,
        "efficiency": 93,
        "type": "stages",
        "infoCode": 0,
        "mainSleep": main,
        "levels": {
            "summary": {},
            "data": data,
            "shortData": [
                {"dateTime": t.strftime("%Y-%m-%dT%H:%M:%S.000"), "level": lv, "seconds": s} for t, lv, s in short
            ],
        },
    }
