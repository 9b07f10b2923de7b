-- Lean rollup rows. Each rollup row used to repeat the metric and field names as text, and its
-- columns were laid out with padding between them: about 200 bytes a 1-minute row with its index
-- for a 1,000-participant day (8.1 M rows, 1.6 GB). Here the names become enums (4 bytes each,
-- compared as the same strings, so queries like metric = 'heart_rate' are unchanged) and the
-- columns are ordered widest first, so no byte is padding. Column names and meanings stay.
--
-- Adding an intraday metric: `ALTER TYPE rollup_metric ADD VALUE '...'` (and rollup_field for its
-- value columns) in the migration that creates its table; tests/test_schema.py checks the enums
-- against the catalogue.

CREATE TYPE rollup_metric AS ENUM ('heart_rate', 'active_zone_minutes', 'spo2', 'hrv_intraday');
COMMENT ON TYPE rollup_metric IS 'Catalogue metrics that have rollups.';
CREATE TYPE rollup_field AS ENUM ('bpm', 'active_zone_minutes', 'fat_burn_minutes', 'cardio_minutes', 'peak_minutes',
                                  'spo2_pct', 'rmssd', 'coverage', 'hf', 'lf');
COMMENT ON TYPE rollup_field IS 'Value columns of the metrics that have rollups.';
-- Comparisons with string literals and query parameters work as with text; a comparison with
-- a text column needs a cast (field::text), as does a UNION or EXCEPT with text.

DO $$
DECLARE
    level text;
    chunk interval;
BEGIN
    FOREACH level IN ARRAY ARRAY['1min', '1h', '1d'] LOOP
        chunk := CASE level WHEN '1min' THEN interval '7 days' WHEN '1h' THEN interval '90 days' ELSE interval '365 days' END;
        EXECUTE format($f$
            CREATE TABLE rollup_%1$s_lean (
                bucket       timestamptz      NOT NULL,
                sum_measured double precision NOT NULL,
                sum_imputed  double precision NOT NULL,
                user_id      integer          NOT NULL,
                metric       rollup_metric    NOT NULL,
                field        rollup_field     NOT NULL,
                n_measured   integer          NOT NULL,
                n_imputed    integer          NOT NULL,
                min_measured real,
                max_measured real,
                min_imputed  real,
                max_imputed  real,
                PRIMARY KEY (user_id, metric, field, bucket)
            )$f$, level);
        PERFORM create_hypertable(format('rollup_%s_lean', level)::regclass, 'bucket', chunk_time_interval => chunk,
                                  create_default_indexes => false);
        EXECUTE format($f$
            INSERT INTO rollup_%1$s_lean (bucket, sum_measured, sum_imputed, user_id, metric, field, n_measured,
                                          n_imputed, min_measured, max_measured, min_imputed, max_imputed)
            SELECT bucket, sum_measured, sum_imputed, user_id, metric::rollup_metric, field::rollup_field, n_measured,
                   n_imputed, min_measured, max_measured, min_imputed, max_imputed
            FROM rollup_%1$s$f$, level);
        EXECUTE format('DROP TABLE rollup_%s', level);
        EXECUTE format('ALTER TABLE rollup_%1$s_lean RENAME TO rollup_%1$s', level);
        EXECUTE format('ALTER INDEX rollup_%1$s_lean_pkey RENAME TO rollup_%1$s_pkey', level);
        EXECUTE format('COMMENT ON TABLE rollup_%s IS %L', level,
            CASE level
                WHEN '1min' THEN 'Per-minute rollup of the intraday metrics, built from the raw tables and imputed_values.'
                WHEN '1h' THEN 'Hourly rollup, built from rollup_1min. Hours are aligned to the participant''s local clock.'
                ELSE 'Daily rollup on the participant''s local days (23 or 25 hours on DST days), built from rollup_1h.'
            END);
        EXECUTE format('COMMENT ON COLUMN rollup_%s.user_id IS %L', level, 'Participant.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.metric IS %L', level, 'Catalogue metric, e.g. heart_rate (enum rollup_metric).');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.field IS %L', level, 'Value column of the metric, e.g. bpm (enum rollup_field).');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.bucket IS %L', level, 'Start of the bucket.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.n_measured IS %L', level, 'Number of measured raw values in the bucket.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.sum_measured IS %L', level, 'Sum of the measured values, accumulated in double precision (exact for float4 inputs, so independent of order); mean = sum_measured / n_measured.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.min_measured IS %L', level, 'Smallest measured value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.max_measured IS %L', level, 'Largest measured value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.n_imputed IS %L', level, 'Number of imputed 1-minute values in the bucket (only minutes without measurements), weighted as the samples they replace.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.sum_imputed IS %L', level, 'Sum of the imputed values, weighted like n_imputed.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.min_imputed IS %L', level, 'Smallest imputed value.');
        EXECUTE format('COMMENT ON COLUMN rollup_%s.max_imputed IS %L', level, 'Largest imputed value.');
        -- The read-only role's default privileges cover new tables of the migrating role only.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitpipe_readonly') THEN
            EXECUTE format('GRANT SELECT ON rollup_%s TO fitpipe_readonly', level);
        END IF;
    END LOOP;
END $$;
