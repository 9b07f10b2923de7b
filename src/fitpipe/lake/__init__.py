"""A Parquet lake of settled days, kept in step with the database (`fitpipe lake sync`).

`connect(path)` opens it in DuckDB with one view per table; docs/lake.md shows Polars and Spark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def connect(root: str | Path, database: str = ":memory:") -> Any:
    """A DuckDB connection with one view per lake table (fitpipe.lake.reader)."""
    from fitpipe.lake.reader import connect as open_lake

    return open_lake(root, database)


__all__ = ["connect"]
