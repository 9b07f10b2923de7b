"""How the excerpts here were cut from the public repositories (see README.md). Not run by the
tests: run by hand with the repositories' git directories, e.g.

    python tests/data/real_exports/extract.py /work/.mirror/danlsn+fitport/repo \
        /work/.mirror/yossi-laor+FITBIT-at-LOCKDWON/repo

Each excerpt keeps the bytes of every record it keeps (Fitbit's own pretty-printing included):
records are cut at their boundaries in the file's text and put back in a list.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
FITPORT, LOCKDOWN = "fitport-2018-melbourne", "lockdown-2020-uk"


def show(repo: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, check=True).stdout


def records(text: str) -> list[str]:
    """The text of each top-level record of a JSON list, exactly as written."""
    out, depth, start, in_string, escaped = [], 0, None, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped = ch == "\\" and not escaped
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
            if depth == 1:
                start = i
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(text[start : i + 1])
    return out


def write(folder: str, name: str, kept: list[str]) -> None:
    target = HERE / folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("[" + ",".join(kept) + "]")


def fitport(repo: str) -> None:
    base = "data/user-site-export"
    for day in ("2018-03-25", "2018-03-26", "2018-03-27", "2018-03-28"):
        kept = records(show(repo, f"{base}/heart_rate/heart_rate-{day}.json").decode())[::20]
        write(FITPORT, f"heart_rate/heart_rate-{day}.json", kept)
    steps = records(show(repo, f"{base}/steps/steps-2018-03-02.json").decode())
    in_days = [r for r in steps if json.loads(r)["dateTime"][:8] in ("03/25/18", "03/26/18", "03/27/18", "03/28/18")]
    kept = [r for i, r in enumerate(in_days) if json.loads(r)["value"] != "0" or i % 10 == 0]
    write(FITPORT, "steps/steps-2018-03-02.json", kept)
    resting = records(show(repo, f"{base}/resting_heart_rate/resting_heart_rate-2017-05-16.json").decode())
    placeholders = [r for r in resting if json.loads(r)["value"]["date"] is None][:3]
    march = [r for r in resting if json.loads(r)["dateTime"][:2] == "03" and json.loads(r)["dateTime"][6:8] == "18"]
    write(FITPORT, "resting_heart_rate/resting_heart_rate-2017-05-16.json", placeholders + march[20:])
    repeated = 17407762310
    january = records(show(repo, f"{base}/sleep/sleep-2018-01-31.json").decode())
    earlier = [r for r in january if json.loads(r)["logId"] == repeated]
    write(FITPORT, "sleep/sleep-2018-01-31.json", earlier)
    later = [
        r
        for r in records(show(repo, f"{base}/sleep/sleep-2018-03-02.json").decode())
        if json.loads(r)["logId"] == repeated or "2018-03-25" <= json.loads(r)["dateOfSleep"] <= "2018-03-29"
    ]
    write(FITPORT, "sleep/sleep-2018-03-02.json", later)


def lockdown(repo: str) -> None:
    with zipfile.ZipFile(io.BytesIO(show(repo, "Data.zip"))) as archive:
        for name in ("heart_rate-2020-10-19.json", "heart_rate-2020-10-20.json"):
            kept = records(archive.read(name).decode())[::20]
            write(LOCKDOWN, name, kept)


if __name__ == "__main__":
    fitport(sys.argv[1])
    lockdown(sys.argv[2])
