"""Data sources. A source turns (user, local day) into that day's raw payloads.

Sources only fetch. Turning payloads into rows is the parsers' job (fitpipe.ingest.validate), chosen by
the source's `payload_format`, so a new source that speaks an existing format needs no other
change, and a new format needs only its parsers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Protocol

from fitpipe.errors import BadInput


class Source(Protocol):
    name: str
    # The parsers to use, e.g. "fitbit-webapi" for payloads shaped like the Fitbit Web API's.
    payload_format: str

    def fetch_day(self, user: Any, day: dt.date) -> Mapping[str, Any]:
        """Return the day's payloads keyed by payload kind. Must not depend on other days' calls."""
        ...


def source_for(name: str) -> Source:
    if name == "synthetic":
        from fitpipe.ingest.sources.synthetic import SyntheticFitbitSource

        return SyntheticFitbitSource()
    raise BadInput(f"unknown data source {name!r}")
