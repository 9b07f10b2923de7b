-- Google Takeout imports (fitpipe import): what Takeout carries that the synthetic data lacks,
-- and a record of every archive imported.

-- Fitbit's per-sample heart-rate confidence (0..3) from Global Export Data heart_rate-*.json.
-- Its own table rather than a nullable column of heart_rate: heart_rate's value columns are
-- rolled up and imputed, and a NULL column would take every synthetic load off the fast
-- binary COPY path. Same rate and key as heart_rate, so the same 1-day chunks.
CREATE TABLE heart_rate_confidence (
    user_id    integer     NOT NULL,
    ts         timestamptz NOT NULL,
    confidence smallint    NOT NULL,
    PRIMARY KEY (user_id, ts)
);
SELECT create_hypertable('heart_rate_confidence', 'ts', chunk_time_interval => interval '1 day', create_default_indexes => false);
COMMENT ON TABLE heart_rate_confidence IS 'The device''s confidence in each heart-rate sample, where the source gives one (Takeout Global Export Data JSON). Join to heart_rate on (user_id, ts). Hypertable, 1-day chunks.';
COMMENT ON COLUMN heart_rate_confidence.user_id IS 'Participant.';
COMMENT ON COLUMN heart_rate_confidence.ts IS 'Instant of the heart-rate sample (the same ts as in heart_rate).';
COMMENT ON COLUMN heart_rate_confidence.confidence IS 'Fitbit confidence, 0 (lowest) .. 3 (highest).';

-- Where a day's rows came from: a handful of rows per participant-day.
CREATE TABLE data_sources (
    user_id     integer NOT NULL,
    day         date    NOT NULL,
    metric      text    NOT NULL,
    origin      text    NOT NULL,
    data_source text    NOT NULL,
    samples     integer NOT NULL CHECK (samples >= 0),
    PRIMARY KEY (user_id, day, metric, origin, data_source)
);
SELECT create_hypertable('data_sources', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE data_sources IS 'Provenance per participant, local day and metric: which file family and which device or app the loaded rows came from, and how many. Written by sources that know it (Takeout). Hypertable, 1-year chunks.';
COMMENT ON COLUMN data_sources.user_id IS 'Participant.';
COMMENT ON COLUMN data_sources.day IS 'Local day that owns the rows (as in ingested_days).';
COMMENT ON COLUMN data_sources.metric IS 'Catalogue metric the rows were loaded into, e.g. heart_rate.';
COMMENT ON COLUMN data_sources.origin IS 'The file family they were read from, e.g. Physical Activity_GoogleData/heart_rate_*.csv.';
COMMENT ON COLUMN data_sources.data_source IS 'The device or app the file names in its data source column, or (not given).';
COMMENT ON COLUMN data_sources.samples IS 'Records read from that origin and data source for the day, before validation.';

CREATE TABLE takeout_imports (
    import_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    sha256         text        NOT NULL,
    path           text        NOT NULL,
    layout         text        NOT NULL,
    trees          jsonb       NOT NULL DEFAULT '[]',
    first_day      date,
    last_day       date,
    files_used     jsonb       NOT NULL DEFAULT '[]',
    files_skipped  jsonb       NOT NULL DEFAULT '[]',
    assumptions    jsonb       NOT NULL DEFAULT '[]',
    rows_by_metric jsonb       NOT NULL DEFAULT '{}',
    dropped        jsonb       NOT NULL DEFAULT '{}',
    run_id         bigint      REFERENCES ingest_runs ON DELETE SET NULL,
    status         text        NOT NULL CHECK (status IN ('done', 'partial')),
    imported_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX takeout_imports_user_sha ON takeout_imports (user_id, sha256);
COMMENT ON TABLE takeout_imports IS 'One row per Google Takeout archive imported for a participant (fitpipe import). Re-importing an archive with a sha256 on record does nothing unless forced.';
COMMENT ON COLUMN takeout_imports.import_id IS 'Row number.';
COMMENT ON COLUMN takeout_imports.user_id IS 'Participant the archive belongs to.';
COMMENT ON COLUMN takeout_imports.sha256 IS 'SHA-256 of the .zip file, or of a folder''s sorted relative paths and file contents.';
COMMENT ON COLUMN takeout_imports.path IS 'Where the archive was read from (informational; the archive is not kept).';
COMMENT ON COLUMN takeout_imports.layout IS 'Newest layout generation found: myfitbitdata (fitbit.com archive), takeout-fitbit (Takeout/Fitbit/) or google-health (Takeout/Google Health/).';
COMMENT ON COLUMN takeout_imports.trees IS 'Every layout tree found in the archive, e.g. ["Takeout/Google Health", "Takeout/Fitbit"].';
COMMENT ON COLUMN takeout_imports.first_day IS 'First local day with data in the archive.';
COMMENT ON COLUMN takeout_imports.last_day IS 'Last local day with data in the archive.';
COMMENT ON COLUMN takeout_imports.files_used IS 'Archive members read, as paths inside the archive.';
COMMENT ON COLUMN takeout_imports.files_skipped IS 'Archive members not read, each {"file", "reason"}.';
COMMENT ON COLUMN takeout_imports.assumptions IS 'Time-zone assumptions made, e.g. Global Export Data JSON times read as local wall time in the participant''s zone.';
COMMENT ON COLUMN takeout_imports.rows_by_metric IS 'Rows loaded per metric by this import''s run.';
COMMENT ON COLUMN takeout_imports.dropped IS 'Records read but not loaded by rule, per reason: copies of a metric that another folder already gave for the day, Health Connect re-exports.';
COMMENT ON COLUMN takeout_imports.run_id IS 'The ingest_runs row of the load.';
COMMENT ON COLUMN takeout_imports.status IS 'done (every day loaded) or partial (some days failed; import again to finish).';
COMMENT ON COLUMN takeout_imports.imported_at IS 'When the import finished.';
