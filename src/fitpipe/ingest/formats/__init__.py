"""Payload formats: each module turns one format's payloads into rows through the validation engine.

A format module declares NAME and PARSERS (one function per table it fills). A source names
its format; a new source that speaks an existing format needs nothing here.
"""

from __future__ import annotations

import importlib

from fitpipe.errors import BadInput

# Format name -> module; imported on first use so start-up stays cheap.
FORMATS = {"fitbit-webapi": "fitpipe.ingest.formats.fitbit_webapi", "takeout": "fitpipe.ingest.formats.takeout",
           "google-health": "fitpipe.ingest.formats.google_health"}


def parsers_for(payload_format: str):
    try:
        module = FORMATS[payload_format]
    except KeyError:
        raise BadInput(f"unknown payload format {payload_format!r}") from None
    return importlib.import_module(module).PARSERS
