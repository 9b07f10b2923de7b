"""Deterministic, realistic non-wear for the synthetic source.

Real wrist devices are off for charging, showers and some nights; wearipedia's data never is.
Every gap is a pure function of (user seed, day), so the same day always has the same gaps,
whichever process generates it and whatever range it is part of.

The pattern, per participant (the profile is drawn once from the user's seed):

| profile (share of users) | night off | whole day off | charging      | other off-wrist        |
|--------------------------|-----------|---------------|---------------|------------------------|
| high (30%)               | 3%        | 0%            | 30-90 min/day | 0-2 stretches, 5-30 min |
| typical (50%)            | 10%       | 2%            | 30-90 min/day | 0-2 stretches, 5-30 min |
| low (20%)                | 45%       | 12%           | 30-90 min/day | 0-2 stretches, 5-30 min |

- Charging starts at a random minute between 07:00 and 21:00 local.
- A "night off" on day D means the device was not worn in the night that starts on D: that
  night's sleep log, SpO2, HRV, breathing rate and daily HRV are missing, heart rate and AZM are
  missing from 22:00 on D and from 00:00 to 07:00 on D+1.
- A "whole day off" removes all of D's heart rate and AZM (daily totals stay: a phone can count steps).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field

PROFILES = (("high", 0.30, 0.03, 0.00), ("typical", 0.50, 0.10, 0.02), ("low", 0.20, 0.45, 0.12))


def stable_seed(*parts: object) -> int:
    """A 32-bit seed from the parts; unlike hash(), the same in every process."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def profile_of(user_seed: int) -> tuple[str, float, float]:
    draw = random.Random(stable_seed("profile", user_seed)).random()
    cumulative = 0.0
    for name, share, night_off, day_off in PROFILES:
        cumulative += share
        if draw < cumulative:
            return name, night_off, day_off
    return PROFILES[-1][0], PROFILES[-1][2], PROFILES[-1][3]


@dataclass
class DayGaps:
    """Non-wear of one local day, as [start, end) seconds after local midnight."""

    intervals: list[tuple[int, int]] = field(default_factory=list)
    night_off: bool = False

    def covers_all_day(self) -> bool:
        return any(lo <= 0 and hi >= 86400 for lo, hi in self.intervals)


def _night_off(user_seed: int, day: dt.date) -> bool:
    _, night_off, _ = profile_of(user_seed)
    return random.Random(stable_seed("night", user_seed, day.isoformat())).random() < night_off


def gaps_for(user_seed: int, day: dt.date) -> DayGaps:
    _, _, day_off = profile_of(user_seed)
    rng = random.Random(stable_seed("gaps", user_seed, day.isoformat()))
    gaps = DayGaps(night_off=_night_off(user_seed, day))
    if rng.random() < day_off:
        gaps.intervals.append((0, 86400))
        return gaps
    charge_start = rng.randint(7 * 3600, 21 * 3600)
    gaps.intervals.append((charge_start, charge_start + rng.randint(30, 90) * 60))
    for _ in range(rng.randint(0, 2)):
        start = rng.randint(6 * 3600, 22 * 3600)
        gaps.intervals.append((start, start + rng.randint(5, 30) * 60))
    if gaps.night_off:
        gaps.intervals.append((22 * 3600, 86400))
    if _night_off(user_seed, day - dt.timedelta(days=1)):
        gaps.intervals.append((0, 7 * 3600))
    gaps.intervals.sort()
    return gaps
