"""Each Takeout layout generation is recognised, as a .zip and as a folder."""

from __future__ import annotations

import datetime as dt

import pytest

from fitpipe.sources.takeout.archive import Archive
from support.takeout import TakeoutBuilder


@pytest.mark.parametrize("generation,layout", [(1, "myfitbitdata"), (2, "takeout-fitbit"), (3, "google-health")])
def test_each_generation_is_recognised_as_zip_and_folder(tmp_path, generation, layout):
    builder = TakeoutBuilder(generation)
    builder.heart_rate_json(dt.date(2024, 3, 1), [(dt.datetime(2024, 3, 1, 8), 62, 2)])
    zipped = Archive(builder.write_zip(tmp_path / "a.zip"))
    folder = Archive(builder.write_folder(tmp_path / "extracted"))
    assert zipped.layout == folder.layout == layout
    assert [m.folder for m in zipped.members] == [m.folder for m in folder.members]
    assert zipped.members[0].folder == ("Physical Activity" if generation == 1 else "Global Export Data")
    zipped.close()
