"""fitpipe: wearable study data into TimescaleDB.

For analysts: `store = fitpipe.connect(url)`, then `store.frame(...)`, `store.status()` and
`store.adherence()` (fitpipe.api).
"""

__version__ = "0.1.0"


def connect(url: str | None = None):
    """Open a fitpipe store (fitpipe.api.Store); imported lazily so `fitpipe --help` stays fast."""
    from fitpipe.api import connect as open_store

    return open_store(url)
