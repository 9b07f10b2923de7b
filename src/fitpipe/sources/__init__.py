"""Data sources: the registry. A source turns (participant, local day) into that day's payloads
and names the parsers that turn them into rows.

Each source is a package here (its declarations, fetch, parsing, credentials, CLI sub-commands
and status rows together); adding one is its package plus one line in SOURCES. The contract is
in fitpipe.sources.contract; tests/test_source_contract.py runs over every registered source.
"""

from __future__ import annotations

import importlib

from fitpipe.errors import BadInput
from fitpipe.sources.contract import MissingExtra, RequestBudget, RetryLater, Source, SourceFailed

__all__ = [
    "SOURCES",
    "MissingExtra",
    "RequestBudget",
    "RetryLater",
    "Source",
    "SourceFailed",
    "register",
    "registered",
    "registered_classes",
    "source_class",
    "source_for",
]

# name -> "module:Class"; imported on first use, so a source's heavy libraries cost nothing elsewhere.
SOURCES: dict[str, str] = {
    "synthetic": "fitpipe.sources.synthetic.source:SyntheticSource",
    "takeout": "fitpipe.sources.takeout.source:TakeoutSource",
    "google-health": "fitpipe.sources.google_health.source:GoogleHealthSource",
}
_loaded: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Add a source class at run time (tests, plugins). Workers forked later inherit it."""
    _loaded[cls.name] = cls
    return cls


def registered() -> list[str]:
    """Every source name: the built-in ones and those registered at run time."""
    return sorted(set(SOURCES) | set(_loaded))


def source_class(name: str) -> type[Source]:
    if name not in _loaded:
        if name not in SOURCES:
            raise BadInput(f"unknown data source {name!r}; known: {', '.join(registered())}")
        module, _, attribute = SOURCES[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), attribute)
    return _loaded[name]


def registered_classes() -> list[type[Source]]:
    return [source_class(name) for name in registered()]


def source_for(name: str) -> Source:
    return source_class(name)()
