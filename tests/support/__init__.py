"""What the tests share: a scratch database (db), the real CLI and its error checks (cli), synthetic
participants and fetches (sources), Takeout archive builders (takeout), monitoring tools (monitoring),
the small store the `fitpipe serve` tests read (serve).
Test files import from here, never from each other or from conftest.py."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
