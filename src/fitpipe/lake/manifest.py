"""The lake's manifest: which files make up each table, and which database state they reflect.

`_lake.json` names the files, the withdrawals the lake has carried out, and the Parquet file of
per participant-day fingerprints (one column per family). A sync writes everything new under
fresh names, then replaces `_lake.json` in one rename: a reader, or a sync killed at any point,
sees either the previous manifest with all of its files or the new one with all of its files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fitpipe.errors import BadInput
from fitpipe.lake.layout import FAMILIES, MANIFEST, STATE_DIR, TEMP_PREFIX
from fitpipe.lake.state import State, empty_state

FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    table: str
    month: str
    first_user: int
    last_user: int
    path: str  # relative to the lake root
    rows: int
    bytes: int


@dataclass
class Manifest:
    generation: int = 0
    synced_at: str | None = None
    files: list[FileEntry] = field(default_factory=list)
    # {"user_id", "removed_at", "days"}: participants withdrawn with --delete-data whose rows the
    # lake has removed, and when.
    withdrawals: list[dict] = field(default_factory=list)
    days_file: str | None = None
    # family -> state (fitpipe.lake.state); loaded from days_file.
    days: dict[str, State] = field(default_factory=lambda: {f: empty_state() for f in FAMILIES})

    def files_of(self, table: str) -> list[FileEntry]:
        return [f for f in self.files if f.table == table]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.exists():
        return Manifest()
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"{path} is not a lake manifest ({exc})") from None
    if data.get("format") != FORMAT:
        raise BadInput(f"{path} has manifest format {data.get('format')!r}; this fitpipe reads format {FORMAT}")
    manifest = Manifest(
        generation=data["generation"],
        synced_at=data["synced_at"],
        files=[FileEntry(**f) for f in data["files"]],
        withdrawals=data["withdrawals"],
        days_file=data["days_file"],
    )
    if manifest.days_file:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(root / manifest.days_file)
        for family in FAMILIES:
            present = table.filter(pc.is_valid(table[family]))
            columns = [present["user_id"], present["day"], present[family]]
            manifest.days[family] = pa.Table.from_arrays(columns, schema=empty_state().schema)
    return manifest


def _write_days(root: Path, manifest: Manifest) -> str:
    """One row per participant-day of either family, in order, a column of fingerprints each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    renamed = [manifest.days[f].rename_columns(["user_id", "day", f]) for f in FAMILIES]
    table = renamed[0]
    for other in renamed[1:]:
        table = table.join(other, ["user_id", "day"], join_type="full outer", coalesce_keys=True)
    table = table.select(["user_id", "day", *FAMILIES]).sort_by([("user_id", "ascending"), ("day", "ascending")])
    columns = {
        "user_id": table["user_id"].cast(pa.int32()),
        "day": table["day"].cast(pa.date32()),
        **{f: table[f].cast(pa.string()) for f in FAMILIES},
    }
    relative = f"{STATE_DIR}/days-{manifest.generation:06d}.parquet"
    (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
    temp = root / STATE_DIR / f"{TEMP_PREFIX}days-{manifest.generation:06d}.parquet"
    pq.write_table(pa.table(columns), temp, compression="zstd")
    _durable_rename(temp, root / relative)
    return relative


def _durable_rename(temp: Path, final: Path) -> None:
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)


def save(root: Path, manifest: Manifest) -> None:
    """Write the new generation's day file, then swap the manifest in with one rename."""
    manifest.synced_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest.days_file = _write_days(root, manifest)
    data = {
        "format": FORMAT,
        "generation": manifest.generation,
        "synced_at": manifest.synced_at,
        "days_file": manifest.days_file,
        "withdrawals": manifest.withdrawals,
        "files": [asdict(f) for f in sorted(manifest.files, key=lambda f: f.path)],
    }
    temp = root / f"{TEMP_PREFIX}{MANIFEST}"
    temp.write_text(json.dumps(data, indent=1) + "\n")
    _durable_rename(temp, root / MANIFEST)
    fsync_dir(root)
