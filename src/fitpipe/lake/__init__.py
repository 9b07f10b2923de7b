"""A Parquet lake of settled days, kept in step with the database (`fitpipe lake sync`).

`connect(path)` opens it in DuckDB with one view per table; `files(path, table)` lists a table's
files of the current generation for other engines (docs/lake.md shows Polars and Spark).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def connect(root: str | Path, database: str = ":memory:") -> Any:
    """A DuckDB connection with one view per lake table (fitpipe.lake.reader)."""
    from fitpipe.lake.reader import connect as open_lake

    return open_lake(root, database)


def files(root: str | Path, table: str) -> list[str]:
    """The table's Parquet files that the lake's manifest names (fitpipe.lake.reader)."""
    from fitpipe.lake.reader import files as listed

    return listed(root, table)


__all__ = ["connect", "files"]
