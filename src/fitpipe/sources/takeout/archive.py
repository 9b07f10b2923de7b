"""A Takeout archive as a list of members, whether it is a .zip or an extracted folder.

Members are opened one at a time and streamed, so an archive of several GB never sits in
memory. Every problem with the archive itself (missing, not a zip, truncated, no known layout,
a member too large, encrypted or stored twice) is a BadInput raised before anything is written
to the database.

An archive is hostile input: a folder is walked without following symbolic links (`unzip`
restores link entries, and a link to /proc/self/environ would otherwise be read as a CSV), and
only regular files are members; the links and special files found are listed in `not_read`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from fitpipe.errors import BadInput

# Layout generations, oldest first: the marker folders that start a tree, and the name a tree
# of that generation gets in reports. A fitbit.com archive has one more level, the account name.
# Generation 1 has no marker: a folder holding Global Export Data files itself (see _BARE_FILE).
BARE = 1
GENERATIONS = (
    (BARE, "global-export-folder", ()),
    (2, "user-site-export", ("user-site-export",)),
    (3, "myfitbitdata", ("MyFitbitData",)),
    (4, "takeout-fitbit", ("Takeout", "Fitbit")),
    (5, "google-health", ("Takeout", "Google Health")),
)
LAYOUT_DESCRIPTIONS = {
    "global-export-folder": "a folder holding Global Export Data files (heart_rate-*.json, sleep-*.json, ...) itself",
    "user-site-export": "fitbit.com export before 2019 (user-site-export/<metric>/)",
    "myfitbitdata": "fitbit.com account archive (MyFitbitData/)",
    "takeout-fitbit": "Google Takeout, Takeout/Fitbit/",
    "google-health": "Google Takeout, Takeout/Google Health/ (2026)",
}
# A Global Export Data file (heart_rate-2018-03-01.json, sleep-2018-02-05.json, ...) outside any
# marked tree: its folder is a tree of its own, the files as their owner had them.
_BARE_FILE = re.compile(r"^[a-z_]+-\d{4}-\d{2}-\d{2}\.json$", re.IGNORECASE)
_HASH_BLOCK = 1 << 20
# The most one member may expand to. The largest real Takeout files (a day of per-second heart
# rate) hold a few MB; JSON members are parsed whole, so their cap is lower. A member over its
# cap refuses the archive: a 1 MB zip can otherwise claim gigabytes.
MAX_MEMBER_BYTES = 256 << 20
MAX_JSON_MEMBER_BYTES = 32 << 20
_READABLE_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


@dataclass(frozen=True)
class Member:
    path: str  # inside the archive, with "/" separators
    size: int
    generation: int  # 0 when under no known tree
    tree: str  # e.g. "Takeout/Fitbit"; "" when under no known tree

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def folder(self) -> str:
        """The member's folder inside its tree, e.g. "Global Export Data"."""
        parts = PurePosixPath(self.path).parts
        depth = len(PurePosixPath(self.tree).parts) if self.tree else 0
        return "/".join(parts[depth:-1])


def _tree_of(parts: tuple[str, ...]) -> tuple[int, str]:
    """The newest generation whose marker folders appear in the path, and the tree's own path."""
    for generation, _, marker in reversed(GENERATIONS):
        if not marker:
            continue
        width = len(marker)
        for start in range(len(parts) - width + 1):
            if parts[start : start + width] == marker:
                # MyFitbitData/<account name>/... : the account folder belongs to the tree.
                end = start + width + (1 if generation == 3 and len(parts) >= start + width + 1 else 0)
                return generation, "/".join(parts[:end])
    return 0, ""


class Archive:
    """Read-only access to a Takeout .zip or folder."""

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if not path.exists():
            raise BadInput(f"{path}: no such file or folder")
        self.not_read: list[tuple[str, str]] = []  # (path, reason) of links and special files in a folder
        if path.is_dir():
            self.kind = "folder"
            # The folder's own name counts: PATH may be the extracted Takeout/ folder itself.
            self.members = [
                self._member((path.name, *PurePosixPath(relative).parts), relative, size)
                for relative, size in sorted(self._walk(path))
            ]
        else:
            self.kind = "zip"
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, struct.error) as exc:
                raise BadInput(
                    f"{path}: not a readable .zip archive ({exc}); give a Takeout .zip or an extracted folder"
                ) from None
            except OSError as exc:
                raise BadInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
            entries = [i for i in self._zip.infolist() if not i.is_dir()]
            try:
                self._check_entries(entries)
            except BadInput:
                self._zip.close()
                raise
            self.members = [
                self._member(tuple(PurePosixPath(i.filename).parts), i.filename, i.file_size) for i in entries
            ]
        try:
            for member in self.members:
                self._check_size(member.path, member.size)
        except BadInput:
            self.close()
            raise
        self.trees = sorted({(m.generation, m.tree) for m in self.members if m.generation}, reverse=True)
        if not self.trees:
            raise BadInput(
                f"{path}: unknown layout: no MyFitbitData/, Takeout/Fitbit/, Takeout/Google Health/ or "
                "user-site-export/ folder in it, nor Global Export Data files (heart_rate-*.json, ...)"
            )

    def _walk(self, root: Path) -> Iterator[tuple[str, int]]:
        """(relative path, size) of every regular file under root, depth first without recursion
        (a folder nested thousands deep is only deep, not an error) and without following links."""
        pending = [""]
        while pending:
            relative = pending.pop()
            try:
                entries = list(os.scandir(root / relative if relative else root))
            except OSError as exc:
                raise BadInput(f"{root}: cannot read {relative or 'it'} ({exc.strerror or exc})") from None
            for entry in entries:
                inner = f"{relative}/{entry.name}" if relative else entry.name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(inner)
                elif stat.S_ISREG(info.st_mode):
                    yield inner, info.st_size
                else:
                    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                    self.not_read.append((inner, f"{kind}: not followed"))

    def _check_entries(self, entries: list[zipfile.ZipInfo]) -> None:
        seen: set[str] = set()
        for entry in entries:
            if entry.filename in seen:
                raise BadInput(f"{self.path}: two entries named {entry.filename}; the archive is not a Takeout export")
            seen.add(entry.filename)
            if entry.flag_bits & 0x1:
                raise BadInput(
                    f"{self.path}: {entry.filename} is encrypted; export the archive again without a password"
                )
            if entry.compress_type not in _READABLE_COMPRESSION:
                raise BadInput(
                    f"{self.path}: {entry.filename} uses a compression method fitpipe cannot read "
                    f"(zip method {entry.compress_type}); re-create the archive with deflate"
                )

    def _check_size(self, name: str, size: int) -> None:
        cap = MAX_JSON_MEMBER_BYTES if name.lower().endswith(".json") else MAX_MEMBER_BYTES
        if size > cap:
            raise BadInput(
                f"{self.path}: {name} expands to {size / (1 << 20):,.0f} MB, over the {cap >> 20} MB one "
                f"{'JSON ' if cap == MAX_JSON_MEMBER_BYTES else ''}member may hold; not a Takeout export as written"
            )

    @staticmethod
    def _member(parts: tuple[str, ...], path: str, size: int) -> Member:
        generation, tree = _tree_of(parts[:-1])
        if not generation and _BARE_FILE.match(parts[-1]):
            generation, tree = BARE, "/".join(parts[:-1])
        if tree and not path.startswith(tree):
            # A folder archive: the tree path counted the folder's own name, which members lack.
            tree = tree.split("/", 1)[1] if "/" in tree else ""
        return Member(path, size, generation, tree)

    @property
    def layout(self) -> str:
        """The newest layout generation present."""
        newest = self.trees[0][0]
        return next(name for generation, name, _ in GENERATIONS if generation == newest)

    def open(self, member: Member) -> IO[bytes]:
        if self._zip is not None:
            try:
                return self._zip.open(member.path)
            except (
                zipfile.BadZipFile,
                NotImplementedError,
                RuntimeError,
                ValueError,
                EOFError,
                struct.error,
                OSError,
            ) as exc:
                # Headers damaged after the central directory was read (found by test_takeout_fuzz).
                raise BadInput(f"{self.path}: damaged archive: cannot read {member.path} ({exc})") from None
        # O_NOFOLLOW: a file swapped for a link after the walk is still not followed.
        try:
            descriptor = os.open(self.path / member.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise BadInput(f"{self.path}: cannot read {member.path} ({exc.strerror or exc})") from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise BadInput(f"{self.path}: {member.path} is no longer a regular file")
        return os.fdopen(descriptor, "rb")

    def sha256(self) -> str:
        """SHA-256 of the .zip file; of a folder, of its sorted relative paths and contents."""
        digest = hashlib.sha256()
        if self._zip is not None:
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
                    digest.update(block)
            return digest.hexdigest()
        for member in self.members:
            digest.update(member.path.encode() + b"\0")
            with self.open(member) as handle:
                for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
                    digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
