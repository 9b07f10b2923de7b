"""The participant page's charts, top to bottom: which metric and value column each draws, and how.

"night": the metric's rows belong to the night that starts on a day (catalogue DayWindow.NIGHT), so
a view of days D..E asks for the nights D-1..E: the night that ends on the morning of D is in view.
"""

from __future__ import annotations

CHARTS = (
    {"id": "heart_rate", "metric": "heart_rate", "field": "bpm", "kind": "band", "title": "Heart rate (bpm)"},
    {"id": "spo2", "metric": "spo2", "field": "spo2_pct", "kind": "line", "title": "SpO2 (%)", "night": True},
    {
        "id": "hrv",
        "metric": "hrv_intraday",
        "field": "rmssd",
        "kind": "line",
        "title": "HRV, RMSSD (ms)",
        "night": True,
    },
    {
        "id": "breathing",
        "metric": "breathing_rate",
        "field": "full_sleep",
        "kind": "points",
        "title": "Breathing rate per night (breaths/min)",
    },
    {"id": "steps", "metric": "daily_activity", "field": "steps", "kind": "bars", "title": "Steps per day"},
    {
        "id": "azm",
        "metric": "active_zone_minutes",
        "field": "active_zone_minutes",
        "kind": "bars",
        "title": "Active zone minutes",
    },
    {
        "id": "sleep",
        "metric": "sleep_stages",
        "field": "stage",
        "kind": "hypnogram",
        "title": "Sleep stages",
        "night": True,
    },
)
# Hypnogram levels, deepest lowest.
STAGE_LEVELS = {"deep": 1, "light": 2, "asleep": 2, "restless": 3, "rem": 3, "wake": 4, "awake": 4}
