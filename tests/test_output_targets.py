"""Where export writes: regular files are replaced atomically; devices, FIFOs and descriptor paths
are written straight through and stay what they were; symlinks are followed; bad paths are
refused before any work, in one line naming the path. (The metrics file: test_metrics_file.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from support.cli import one_error_line, run_fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

EXPORT = ("export", "--metric", "heart_rate", "--resolution", "1d")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_export_to_a_device_writes_through_it_and_leaves_the_device(loaded, tmp_path):
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = run_fitpipe(loaded, *EXPORT, "-o", str(device))
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(device.stat().st_mode), "the device node was replaced by a regular file"
    assert device.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_export_to_a_fifo_feeds_its_reader(loaded, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run_fitpipe(loaded, *EXPORT, "-o", str(fifo), timeout=60)
    reader.join(10)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].startswith(b"user_id,bucket,bpm")


def test_export_through_a_link_to_stdout_reaches_stdout(loaded, tmp_path):
    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    result = run_fitpipe(loaded, *EXPORT, "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("user_id,bucket,bpm") and result.stdout.count("\n") == 3
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"


def test_a_symlink_to_a_file_is_followed_and_stays_a_link(loaded, tmp_path):
    real = tmp_path / "data" / "hr.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "hr.csv"
    link.symlink_to(real)
    result = run_fitpipe(loaded, *EXPORT, "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text().startswith("user_id,bucket,bpm")


def test_a_long_valid_file_name_works(loaded, tmp_path):
    target = tmp_path / ("h" * 245 + ".csv")  # 249 characters, the longest the issue tried
    result = run_fitpipe(loaded, *EXPORT, "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith("user_id")


def test_an_existing_file_keeps_its_mode_and_a_new_one_is_private(loaded, tmp_path):
    shared = tmp_path / "shared.csv"
    shared.write_text("old\n")
    shared.chmod(0o644)
    fresh = tmp_path / "fresh.csv"
    assert run_fitpipe(loaded, *EXPORT, "-o", str(shared)).returncode == 0
    assert run_fitpipe(loaded, *EXPORT, "-o", str(fresh)).returncode == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_an_empty_output_name_is_one_line(loaded):
    line = one_error_line(run_fitpipe(loaded, *EXPORT, "-o", ""), code=2)
    assert "--output is empty" in line


def test_export_with_stdout_closed_is_one_line(loaded):
    command = " ".join([sys.executable, "-m", "fitpipe.cli", *EXPORT]) + " >&-"
    result = subprocess.run(
        ["bash", "-c", command], env={**os.environ, "FITPIPE_DATABASE_URL": loaded}, capture_output=True, text=True
    )
    assert result.returncode == 2
    one_error_line(result, "standard output is closed", code=2)
