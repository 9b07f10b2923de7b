"""The Takeout source: a participant's own Google Takeout archive, brought in with `fitpipe import`.

Its credential is a file. `fitpipe import` indexes the archive once and stages its records per
local day (fitpipe.ingest.takeout); this source hands one staged day to the loader, so each day
goes through the same per-day transaction as `ingest`. The participant's settings record the
last archive imported (path, sha256, layout, time-zone assumptions); the full record of every
archive is in takeout_imports.

Nightly `ingest` for a participant enrolled with this source has nothing to fetch until a newer
archive is imported: such a day is deferred, and `status` says why.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fitpipe.ingest.sources.base import Fetch, RetryLater, Source

# Set on the participant's settings for the length of one import run (never stored).
STAGE_SETTING = "stage"
NOT_IMPORTED = "not in any imported Takeout archive yet; import a newer archive with `fitpipe import`"


class TakeoutSource(Source):
    name = "takeout"
    payload_format = "takeout"
    credential_kind = "file"
    # An archive is what it is: a day in it is settled once it is over. A newer archive still
    # replaces it (imports never skip settled days).
    settle_days = 0

    def fetch_day(self, participant: Any, day: dt.date, fetch: Fetch) -> dict[str, Any]:
        from fitpipe.ingest.takeout.index import Stage

        stage = participant.settings.get(STAGE_SETTING)
        if not stage:
            raise RetryLater(NOT_IMPORTED, after=dt.timedelta(days=1))
        return {"items": Stage.read(Path(stage), day)}
