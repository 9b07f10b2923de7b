"""Where an import stages an archive's days: a folder per import under the temporary directory,
named after the participant and the importing process, so that what a crash (kill -9) leaves
behind is found and removed, and a withdrawal removes every staged day of the participant.

The staged files hold health data: they must not outlive the import that made them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

_PREFIX = "fitpipe-takeout-"
_NAME = re.compile(rf"^{_PREFIX}u(\d+)-p(\d+)-")


def make_stage_dir(user_id: int) -> Path:
    """A new folder (mode 0700) for one import of this participant by this process."""
    remove_stale_stage_dirs()
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}u{user_id}-p{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def _stage_dirs() -> list[tuple[Path, int, int]]:
    """(folder, participant, process) of every stage folder of this OS user."""
    found = []
    root = Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match:
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            found.append((root / entry.name, int(match[1]), int(match[2])))
    return found


def remove_stale_stage_dirs() -> list[Path]:
    """Remove the stage folders whose import process is gone (killed, crashed)."""
    removed = []
    for folder, _, pid in _stage_dirs():
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_stage_dirs_of(user_id: int) -> list[Path]:
    """Remove every stage folder of a participant (withdrawal), a running import's included: its
    remaining days are not loaded anyway (the participant withdrew)."""
    removed = []
    for folder, owner, _ in _stage_dirs():
        if owner == user_id:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
