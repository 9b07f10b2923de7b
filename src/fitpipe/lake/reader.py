"""Reading the lake: a DuckDB connection with one view per table over the manifest's files, and
the file list itself for other engines (Spark, Polars).

    import fitpipe.lake
    con = fitpipe.lake.connect("/data/lake")
    con.sql("SELECT user_id, avg(bpm) FROM heart_rate GROUP BY ALL").df()
    hr = fitpipe.lake.files("/data/lake", "heart_rate")
    spark.read.option("basePath", "/data/lake/table=heart_rate").parquet(*hr)

Both list the files the manifest names, never a glob, so a sync running meanwhile (or one that
was killed) cannot show a reader a row twice or half a change.
"""

from __future__ import annotations

from pathlib import Path

from fitpipe.errors import BadInput
from fitpipe.lake import manifest as manifests
from fitpipe.lake.layout import BY_NAME, DATASETS, MANIFEST
from fitpipe.lake.writer import schema


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_select(dataset) -> str:
    duck = {
        "date32[day]": "DATE",
        "int16": "SMALLINT",
        "int32": "INTEGER",
        "int64": "BIGINT",
        "float": "FLOAT",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "string": "VARCHAR",
        "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    }
    columns = [f"NULL::{duck.get(str(f.type), 'VARCHAR')} AS {f.name}" for f in schema(dataset)]
    return f"SELECT {', '.join(columns)} WHERE false"


def _manifest(root: Path):
    if not (root / MANIFEST).exists():
        raise BadInput(f"{root} holds no lake (no {MANIFEST}); create it with `fitpipe lake sync --root {root}`")
    return manifests.load(root)


def files(root: str | Path, table: str) -> list[str]:
    """Paths of the table's Parquet files in the lake's current generation, sorted."""
    if table not in BY_NAME:
        raise BadInput(f"the lake has no table {table!r}; it has {', '.join(d.name for d in DATASETS)}")
    root = Path(root)
    return sorted(str(root / f.path) for f in _manifest(root).files_of(table))


def connect(root: str | Path, database: str = ":memory:"):
    """A DuckDB connection with a view per lake table (heart_rate, ..., rollup_1h, imputed_values)."""
    try:
        import duckdb
    except ImportError:
        raise BadInput("reading the lake needs duckdb: pip install 'fitpipe[lake]'") from None

    root = Path(root)
    manifest = _manifest(root)
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    for dataset in DATASETS:
        paths = [str(root / f.path) for f in manifest.files_of(dataset.name)]
        if paths:
            listed = ", ".join(_quoted(p) for p in sorted(paths))
            body = f"SELECT * FROM read_parquet([{listed}], hive_partitioning = false)"
        else:
            body = _empty_select(dataset)
        con.execute(f"CREATE OR REPLACE VIEW {dataset.name} AS {body}")
    return con
