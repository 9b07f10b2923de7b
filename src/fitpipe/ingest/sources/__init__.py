"""Data sources: the registry. A source turns (participant, local day) into that day's payloads.

Sources only fetch. Turning payloads into rows is the job of their payload format's parsers
(fitpipe.ingest.formats), so a new source that speaks an existing format is one module here plus
one line in SOURCES. The contract is in fitpipe.ingest.sources.base.
"""

from __future__ import annotations

import importlib

from fitpipe.errors import BadInput
from fitpipe.ingest.sources.base import RequestBudget, RetryLater, Source, SourceFailed

__all__ = ["SOURCES", "RequestBudget", "RetryLater", "Source", "SourceFailed", "register", "source_class", "source_for"]

# name -> "module:Class"; imported on first use, so a source's heavy libraries cost nothing elsewhere.
SOURCES: dict[str, str] = {
    "synthetic": "fitpipe.ingest.sources.synthetic:SyntheticSource",
    "takeout": "fitpipe.ingest.sources.takeout:TakeoutSource",
    "google-health": "fitpipe.ingest.sources.google_health:GoogleHealthSource",
}
_loaded: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Add a source class at run time (tests, plugins). Workers forked later inherit it."""
    _loaded[cls.name] = cls
    return cls


def source_class(name: str) -> type[Source]:
    if name not in _loaded:
        if name not in SOURCES:
            raise BadInput(f"unknown data source {name!r}; known: {', '.join(sorted(set(SOURCES) | set(_loaded)))}")
        module, _, attribute = SOURCES[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), attribute)
    return _loaded[name]


def source_for(name: str) -> Source:
    return source_class(name)()


def known_sources() -> list[str]:
    return sorted(set(SOURCES) | set(_loaded))
