-- Rollups and imputed values. Continuous aggregates are not available on TimescaleDB's Apache
-- edition, so fitpipe keeps its own: ingestion logs changed ranges in rollup_invalidations, and
-- `fitpipe aggregate refresh` recomputes exactly the local days those ranges touch.
--
-- Every rollup row keeps mergeable state (count, sum, min, max) and keeps measured and imputed
-- values apart, so any level can be read with or without imputation and 1 h is built from
-- 1 min, 1 day from 1 h, never by averaging averages.

CREATE TABLE imputed_values (
    user_id     integer     NOT NULL,
    metric      text        NOT NULL,
    field       text        NOT NULL,
    ts          timestamptz NOT NULL,
    value       real        NOT NULL,
    method      text        NOT NULL,
    gap_minutes integer     NOT NULL CHECK (gap_minutes > 0),
    imputed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, metric, field, ts)
);
-- ~1,440 rows per participant-day at most per field (only missing minutes are filled).
SELECT create_hypertable('imputed_values', 'ts', chunk_time_interval => interval '30 days', create_default_indexes => false);
COMMENT ON TABLE imputed_values IS 'Values filled in for missing 1-minute buckets by fitpipe impute. Measured tables are never touched; rollups and exports mark these as imputed.';
COMMENT ON COLUMN imputed_values.user_id IS 'Participant.';
COMMENT ON COLUMN imputed_values.metric IS 'Catalogue metric, e.g. heart_rate.';
COMMENT ON COLUMN imputed_values.field IS 'Value column of the metric, e.g. bpm.';
COMMENT ON COLUMN imputed_values.ts IS 'Start of the filled 1-minute bucket.';
COMMENT ON COLUMN imputed_values.value IS 'The imputed value for the minute.';
COMMENT ON COLUMN imputed_values.method IS 'Imputation method: profile (participant''s daily profile blended with the gap edges) or linear.';
COMMENT ON COLUMN imputed_values.gap_minutes IS 'Length in minutes of the gap this value fills.';
COMMENT ON COLUMN imputed_values.imputed_at IS 'When the value was computed.';

CREATE TABLE rollup_1min (
    user_id      integer          NOT NULL,
    metric       text             NOT NULL,
    field        text             NOT NULL,
    bucket       timestamptz      NOT NULL,
    n_measured   integer          NOT NULL,
    sum_measured double precision NOT NULL,
    min_measured real,
    max_measured real,
    n_imputed    integer          NOT NULL,
    sum_imputed  double precision NOT NULL,
    min_imputed  real,
    max_imputed  real,
    PRIMARY KEY (user_id, metric, field, bucket)
);
-- ~9,000 rows per participant-day across metrics and fields -> ~63 M a week for 1,000.
SELECT create_hypertable('rollup_1min', 'bucket', chunk_time_interval => interval '7 days', create_default_indexes => false);

CREATE TABLE rollup_1h (LIKE rollup_1min INCLUDING ALL);
SELECT create_hypertable('rollup_1h', 'bucket', chunk_time_interval => interval '90 days', create_default_indexes => false);

CREATE TABLE rollup_1d (LIKE rollup_1min INCLUDING ALL);
SELECT create_hypertable('rollup_1d', 'bucket', chunk_time_interval => interval '365 days', create_default_indexes => false);

DO $$
DECLARE
    level text;
BEGIN
    FOREACH level IN ARRAY ARRAY['1min', '1h', '1d'] LOOP
        EXECUTE format('COMMENT ON TABLE rollup_%s IS %L', level,
            CASE level
                WHEN '1min' THEN 'Per-minute rollup of the intraday metrics, built from the raw tables and imputed_values.'
                WHEN '1h' THEN 'Hourly rollup, built from rollup_1min. Hours are aligned to the participant''s local clock.'
                ELSE 'Daily rollup on the participant''s local days (23 or 25 hours on DST days), built from rollup_1h.'
            END);
        EXECUTE format('COMMENT ON COLUMN rollup_%s.user_id IS %L', level, 'Participant.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.metric IS %L', level, 'Catalogue metric, e.g. heart_rate.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.field IS %L', level, 'Value column of the metric, e.g. bpm.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.bucket IS %L', level, 'Start of the bucket.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.n_measured IS %L', level, 'Number of measured raw values in the bucket.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.sum_measured IS %L', level, 'Sum of the measured values; mean = sum_measured / n_measured.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.min_measured IS %L', level, 'Smallest measured value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.max_measured IS %L', level, 'Largest measured value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.n_imputed IS %L', level, 'Number of imputed 1-minute values in the bucket (only minutes without measurements).');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.sum_imputed IS %L', level, 'Sum of the imputed values.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.min_imputed IS %L', level, 'Smallest imputed value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.max_imputed IS %L', level, 'Largest imputed value.');
    END LOOP;
END $$;
