"""What the stand-in's parts share: an account, a point it serves, and the error of a bad request."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json; charset=UTF-8"
PROTOBUF = "application/x-protobuf"


@dataclass
class Account:
    """A Google account with a Fitbit, whose data the synthetic generator makes."""

    name: str
    timezone: str = "UTC"
    seed: int = 1
    wear_gaps: bool = True
    # Faults that are properties of the account rather than of one request:
    no_data: bool = False
    phone_duplicates: bool = False  # every heart-rate and steps point also comes from a phone
    shuffle_pages: bool = False  # points in random order across pages instead of newest first
    synced_until: dt.datetime | None = None  # late sync: nothing measured after this is there yet
    # What users/me/pairedDevices reports: the watch's last sync is synced_until (now when None).
    battery_level: int = 87
    device_paired: bool = True  # False: no device paired, an empty list
    # The device's clock shown as this UTC offset (seconds), e.g. after a flight; None: the zone's.
    device_offset_s: int | None = None
    # Keep every Nth heart-rate second only (a device at rest samples every few seconds; tests
    # that do not compare heart rate use it to stay fast).
    heart_rate_every: int = 1
    account_id: str = field(default_factory=lambda: str(random.randrange(10**17, 10**18)))


@dataclass
class Point:
    data_type: str
    field_name: str  # the DataPoint oneof member, e.g. heart_rate
    message: Any  # the raw protobuf message of that member
    order: Any  # interval start, sample time or date: the API orders by it, newest first
    filters: dict[str, Any]  # AIP-160 field -> value, for the filters the API supports
    known_at: dt.datetime  # when the device would have synced it
    source: str = "watch"
    name: str = ""


class BadRequest(Exception):
    """A request the API answers with 400 INVALID_ARGUMENT."""
