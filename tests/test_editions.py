"""Both TimescaleDB editions: the community edition (CI's default test server, as in the Docker
image) and the Apache-2 edition (a cluster with timescaledb.license = apache, FITPIPE_TEST_APACHE_ADMIN_URL).
fitpipe must work on both; community-only extras say so in one line on Apache."""

from __future__ import annotations

import json
import os
import subprocess

import psycopg
import pytest

from fitpipe.derive.maintain import APACHE_NOTE
from support import ROOT
from support.cli import fitpipe
from support.db import ADMIN_URL, initialised_database, server_edition

# Set by .ci/run: a missing edition fails instead of skipping.
REQUIRED = os.environ.get("FITPIPE_TEST_REQUIRE_EDITIONS") == "1"


def test_the_default_test_server_is_the_community_edition_in_ci():
    found = server_edition(ADMIN_URL)
    if not REQUIRED and found != "community":
        pytest.skip(f"the test server runs the {found} edition; CI runs the community edition")
    assert found == "community"
    # The build on this machine carries the Timescale-License module, and dev-db.sh says so.
    result = subprocess.run([str(ROOT / "scripts" / "dev-db.sh"), "edition"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "community"


def test_ci_builds_the_vendored_community_source():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "FITPIPE_TSDB_SOURCE" in ci and "shared/vendor/timescaledb-2.19.3.tar.gz" in ci
    assert "FITPIPE_TSDB_LICENSE=apache" in ci and "FITPIPE_TEST_APACHE_ADMIN_URL" in ci


def test_the_apache_server_refuses_community_features(apache_admin_url):
    with initialised_database(apache_admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW timescaledb.license").fetchone()[0] == "apache"
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="apache"):
            conn.execute("ALTER TABLE heart_rate SET (timescaledb.compress)")


@pytest.mark.slow
def test_the_pipeline_works_on_the_apache_edition_and_maintain_says_one_line(apache_admin_url, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-05")
    with initialised_database(apache_admin_url) as url:
        fitpipe(url, "seed-users", "--count", "1", "--start-date", "2024-01-01")
        fitpipe(url, "backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--workers", "1")
        fitpipe(url, "impute", "--metric", "heart_rate", "--method", "linear")
        fitpipe(url, "aggregate", "refresh")
        result = fitpipe(url, "maintain")
        assert result.stdout.strip() == APACHE_NOTE
        assert result.stdout.count("\n") == 1
        report = json.loads(fitpipe(url, "status", "--json").stdout)
        heart = next(t for t in report["storage"] if t["table"] == "heart_rate")
        assert heart["bytes"] > 0 and heart["compressed_bytes"] == 0 and heart["ratio"] is None
        exported = fitpipe(url, "export", "--metric", "heart_rate", "--resolution", "1h", "--output", "-").stdout
        assert len(exported.splitlines()) > 24
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM rollup_1d WHERE metric = 'heart_rate'").fetchone()[0] >= 2
