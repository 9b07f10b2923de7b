-- Participants, and the state that ingestion keeps next to the data.
-- Every state change happens in the same transaction as the data it describes.

CREATE FUNCTION fitpipe_is_timezone(zone text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM now() AT TIME ZONE zone;
    RETURN zone IS NOT NULL AND zone <> '';
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END $$;
COMMENT ON FUNCTION fitpipe_is_timezone(text) IS 'True when PostgreSQL knows the zone name; guards users.timezone.';

CREATE TABLE users (
    user_id        integer     PRIMARY KEY CHECK (user_id > 0),
    display_name   text        NOT NULL,
    timezone       text        NOT NULL DEFAULT 'UTC' CHECK (fitpipe_is_timezone(timezone)),
    source         text        NOT NULL DEFAULT 'synthetic' CHECK (source IN ('synthetic')),
    synthetic_seed bigint      NOT NULL UNIQUE,
    wear_gaps      boolean     NOT NULL DEFAULT true,
    study_start    date        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE users IS 'Study participants. Every data table refers to user_id.';
COMMENT ON COLUMN users.user_id IS 'Participant number, 1..N, chosen by seed-users.';
COMMENT ON COLUMN users.display_name IS 'Human-readable label, e.g. participant-0001.';
COMMENT ON COLUMN users.timezone IS 'IANA zone of the participant; local days and floating device times are read in it.';
COMMENT ON COLUMN users.source IS 'Where the data comes from. Only synthetic (wearipedia) exists so far.';
COMMENT ON COLUMN users.synthetic_seed IS 'The participant''s own seed for the synthetic source; with the day it fixes that day''s data.';
COMMENT ON COLUMN users.wear_gaps IS 'Whether the synthetic source removes realistic non-wear stretches (charging, nights off).';
COMMENT ON COLUMN users.study_start IS 'First local day of the study for this participant; ingestion starts here.';
COMMENT ON COLUMN users.created_at IS 'When the row was created.';

CREATE TABLE ingest_runs (
    run_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command     text        NOT NULL,
    arguments   jsonb       NOT NULL DEFAULT '{}',
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    user_days   integer     NOT NULL DEFAULT 0,
    rows_loaded bigint      NOT NULL DEFAULT 0,
    quarantined integer     NOT NULL DEFAULT 0,
    skipped     integer     NOT NULL DEFAULT 0,
    failed      integer     NOT NULL DEFAULT 0,
    error       text,
    host        text,
    pid         integer
);
COMMENT ON TABLE ingest_runs IS 'One row per ingest or backfill invocation: the run log read by status and the Pipeline dashboard.';
COMMENT ON COLUMN ingest_runs.run_id IS 'Run number.';
COMMENT ON COLUMN ingest_runs.command IS 'ingest or backfill.';
COMMENT ON COLUMN ingest_runs.arguments IS 'The flags the run was given (never the database URL).';
COMMENT ON COLUMN ingest_runs.status IS 'running, ok, failed (some user-day failed) or interrupted (the process stopped early).';
COMMENT ON COLUMN ingest_runs.started_at IS 'When the run started.';
COMMENT ON COLUMN ingest_runs.finished_at IS 'When the run ended; NULL while it runs or if it died.';
COMMENT ON COLUMN ingest_runs.user_days IS 'User-days loaded by this run.';
COMMENT ON COLUMN ingest_runs.rows_loaded IS 'Rows written to the metric tables by this run.';
COMMENT ON COLUMN ingest_runs.quarantined IS 'Records set aside in quarantine by this run.';
COMMENT ON COLUMN ingest_runs.skipped IS 'User-days skipped: already ingested, or held by another run.';
COMMENT ON COLUMN ingest_runs.failed IS 'User-days that failed and were left as they were.';
COMMENT ON COLUMN ingest_runs.error IS 'The failed user-days and their errors, one per line.';
COMMENT ON COLUMN ingest_runs.host IS 'Host name of the machine that ran it.';
COMMENT ON COLUMN ingest_runs.pid IS 'Process id of the run.';

CREATE TABLE ingested_days (
    user_id     integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    day         date        NOT NULL,
    source      text        NOT NULL,
    run_id      bigint      REFERENCES ingest_runs ON DELETE SET NULL,
    rows_loaded integer     NOT NULL,
    rows_by_metric jsonb    NOT NULL DEFAULT '{}',
    quarantined integer     NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, day)
);
COMMENT ON TABLE ingested_days IS 'The ledger: a (user, local day) is here exactly when all of its rows are committed. The cursor is derived from it.';
COMMENT ON COLUMN ingested_days.user_id IS 'Participant.';
COMMENT ON COLUMN ingested_days.day IS 'Local day in the participant''s timezone.';
COMMENT ON COLUMN ingested_days.source IS 'Source that produced the day, e.g. synthetic.';
COMMENT ON COLUMN ingested_days.run_id IS 'Run that last (re)loaded the day.';
COMMENT ON COLUMN ingested_days.rows_loaded IS 'Rows the day put in the metric tables.';
COMMENT ON COLUMN ingested_days.rows_by_metric IS 'Rows per metric table, e.g. {"heart_rate": 80123}; status sums these instead of counting big tables.';
COMMENT ON COLUMN ingested_days.quarantined IS 'Records of the day set aside in quarantine.';
COMMENT ON COLUMN ingested_days.ingested_at IS 'When the day was last (re)loaded.';

CREATE TABLE quarantine (
    quarantine_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    day           date        NOT NULL,
    metric        text        NOT NULL,
    raw_value     text,
    reason        text        NOT NULL,
    run_id        bigint      REFERENCES ingest_runs ON DELETE SET NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_user_day ON quarantine (user_id, day);
COMMENT ON TABLE quarantine IS 'Records that were not loaded: out of their metric''s valid range, malformed, or at a local time that does not exist. Replaced with the day.';
COMMENT ON COLUMN quarantine.quarantine_id IS 'Row number.';
COMMENT ON COLUMN quarantine.user_id IS 'Participant.';
COMMENT ON COLUMN quarantine.day IS 'Local day whose payload held the record.';
COMMENT ON COLUMN quarantine.metric IS 'Catalogue metric (or payload kind) the record belongs to.';
COMMENT ON COLUMN quarantine.raw_value IS 'The record as received, as text.';
COMMENT ON COLUMN quarantine.reason IS 'Why it was set aside.';
COMMENT ON COLUMN quarantine.run_id IS 'Run that set it aside.';
COMMENT ON COLUMN quarantine.recorded_at IS 'When it was set aside.';

CREATE TABLE rollup_invalidations (
    invalidation_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    metric          text        NOT NULL,
    lo              timestamptz NOT NULL,
    hi              timestamptz NOT NULL CHECK (hi > lo),
    logged_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE rollup_invalidations IS 'Time ranges whose raw data changed since the rollups were last refreshed; written in the same transaction as the change, consumed by aggregate refresh.';
COMMENT ON COLUMN rollup_invalidations.invalidation_id IS 'Row number; a refresh deletes exactly the rows it has read.';
COMMENT ON COLUMN rollup_invalidations.user_id IS 'Participant whose data changed.';
COMMENT ON COLUMN rollup_invalidations.metric IS 'Catalogue metric whose raw table changed.';
COMMENT ON COLUMN rollup_invalidations.lo IS 'Start of the changed range (inclusive).';
COMMENT ON COLUMN rollup_invalidations.hi IS 'End of the changed range (exclusive).';
COMMENT ON COLUMN rollup_invalidations.logged_at IS 'When the change was committed.';
