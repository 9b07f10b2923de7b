"""Where a command writes a file it was given (`export --output`, `--metrics-file`).

- A regular file (or a new name) is written under a temporary name in the same folder and
  renamed over the target only when complete, so a reader never sees half a file and an error
  leaves the old file as it was. A file that existed keeps its permission bits (and its owner
  where allowed); a new file is created 0600, since it holds participants' health data.
- A symlink is followed: the file it points to is replaced, the link stays a link.
- Anything else that exists, a device (/dev/null), a FIFO, or a descriptor path (/dev/stdout,
  /dev/fd/N), is written straight through: replacing it would turn /dev/null into a file when
  run as root, and send /dev/stdout's output nowhere. Callers that must read the file back (the
  metrics file) refuse those instead (`regular_only`).

Every check runs before the work starts (`check_target`), so a bad path costs nothing and the
message names the path the user gave, never a temporary one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fitpipe.errors import BadInput

# Paths that stand for an open descriptor of this process: their target is whatever the
# descriptor is (a pipe, a terminal, the file a shell redirected to), never a name to replace.
_DESCRIPTOR_PREFIXES = ("/proc/", "/dev/fd/")
_MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class Target:
    given: str  # as the user wrote it, for messages
    path: Path  # where the bytes go: symlinks resolved for regular files
    write_through: bool  # a device, FIFO or descriptor path: opened and written in place


def _is_descriptor_path(path: Path) -> bool:
    """/dev/stdout, /dev/fd/1, /proc/self/fd/1, and links to them."""
    current = Path(os.path.abspath(path))
    for _ in range(_MAX_SYMLINK_HOPS):
        if str(current).startswith(_DESCRIPTOR_PREFIXES):
            return True
        if os.path.realpath(current.parent).startswith(_DESCRIPTOR_PREFIXES):
            return True
        if not current.is_symlink():
            return False
        current = Path(os.path.abspath(current.parent / os.readlink(current)))
    return False


def _nearest_existing_folder(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_target(
    given: str | os.PathLike, flag: str, *, regular_only: bool = False, create_folders: bool = False
) -> Target:
    """Check that `given` can be written, and say how; raises BadInput naming it otherwise."""
    text = os.fspath(given)
    if not text.strip():
        raise BadInput(f"{flag} is empty; give a file name")
    if _is_descriptor_path(Path(text)):
        if regular_only:
            raise BadInput(f"{flag} {text} is not a regular file; give a file name")
        return Target(text, Path(text), write_through=True)
    real = Path(os.path.realpath(text))
    if real.is_dir():
        raise BadInput(f"{flag} {text} is a folder; give a file name")
    if real.exists():
        mode = real.stat().st_mode
        if not stat.S_ISREG(mode):
            if regular_only:
                raise BadInput(f"{flag} {text} is not a regular file (a device, FIFO or socket); give a file name")
            if stat.S_ISSOCK(mode):
                raise BadInput(f"{flag} {text} is a socket; give a file name")
            if not os.access(real, os.W_OK):
                raise BadInput(f"{flag} {text} is not writable")
            return Target(text, real, write_through=True)
    folder = real.parent
    if not folder.is_dir():
        existing = _nearest_existing_folder(folder)
        if not create_folders or not existing.is_dir():
            raise BadInput(f"{flag} {text}: folder {folder} does not exist")
        folder = existing
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {text}: folder {folder} is not writable")
    return Target(text, real, write_through=False)


@contextlib.contextmanager
def open_target(target: Target) -> Iterator[BinaryIO]:
    """The stream to write to; a regular file appears under its name only if the block ends well."""
    if target.write_through:
        try:
            # Opened outside the `with` below so only a failure to open becomes BadInput, not an
            # OSError raised by the caller's block.
            out = open(target.path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise BadInput(f"cannot write {target.given}: {exc.strerror}") from None
        with out:
            yield out
        return
    target.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A short fixed prefix: a long but valid target name must not make the temporary name too long.
        handle, temporary = tempfile.mkstemp(prefix=".fitpipe-", suffix=".partial", dir=target.path.parent)
    except OSError as exc:
        raise BadInput(f"cannot write {target.given}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        _keep_mode_and_owner(target.path, temporary)
        os.replace(temporary, target.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _keep_mode_and_owner(target: Path, temporary: str) -> None:
    try:
        before = target.stat()
    except FileNotFoundError:
        return  # a new file stays 0600
    os.chmod(temporary, stat.S_IMODE(before.st_mode))
    with contextlib.suppress(PermissionError):
        os.chown(temporary, before.st_uid, before.st_gid)
