-- Sources as first-class citizens: per-source settings and encrypted credentials out of `users`,
-- a timezone history per participant, withdrawal, and a ledger that knows provisional,
-- complete, empty and deferred days.

-- Which sources exist is declared in Python (fitpipe.ingest.sources), in one place.
ALTER TABLE users DROP CONSTRAINT users_source_check;
COMMENT ON COLUMN users.source IS 'The source nightly ingest reads for this participant, e.g. synthetic; its settings are in participant_sources.';
COMMENT ON COLUMN users.timezone IS 'IANA zone in force today; timezone_history holds the zone of every day.';
ALTER TABLE users ADD COLUMN withdrawn_at timestamptz;
COMMENT ON COLUMN users.withdrawn_at IS 'When the participant withdrew; ingestion skips withdrawn participants. NULL while enrolled.';

CREATE TABLE participant_sources (
    user_id          integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    source           text        NOT NULL,
    settings         jsonb       NOT NULL DEFAULT '{}',
    credential_state text        NOT NULL DEFAULT 'not_needed'
                     CHECK (credential_state IN ('not_needed', 'missing', 'ok', 'needs_reconsent')),
    credential_note  text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source)
);
COMMENT ON TABLE participant_sources IS 'A participant''s settings for one source (never secrets; those are in source_credentials). Only that source reads settings.';
COMMENT ON COLUMN participant_sources.user_id IS 'Participant.';
COMMENT ON COLUMN participant_sources.source IS 'Source name, e.g. synthetic.';
COMMENT ON COLUMN participant_sources.settings IS 'The source''s own settings, e.g. {"seed": 1, "wear_gaps": true, "sync_lag_hours": 30} for synthetic.';
COMMENT ON COLUMN participant_sources.credential_state IS 'not_needed (source has no credentials), missing, ok, or needs_reconsent (the provider refused the stored grant).';
COMMENT ON COLUMN participant_sources.credential_note IS 'Why the credential state last changed, without the secret.';
COMMENT ON COLUMN participant_sources.updated_at IS 'When settings or credential state last changed.';

INSERT INTO participant_sources (user_id, source, settings)
SELECT user_id, source, jsonb_build_object('seed', synthetic_seed, 'wear_gaps', wear_gaps) FROM users;
ALTER TABLE users DROP COLUMN synthetic_seed, DROP COLUMN wear_gaps;

-- The old table only held a reference and was never written; secrets now live here, encrypted.
DROP TABLE source_credentials;
CREATE TABLE source_credentials (
    user_id    integer     NOT NULL,
    source     text        NOT NULL,
    ciphertext bytea       NOT NULL,
    key_id     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source),
    FOREIGN KEY (user_id, source) REFERENCES participant_sources ON DELETE CASCADE
);
COMMENT ON TABLE source_credentials IS 'Secrets (OAuth refresh tokens and the like), encrypted with FITPIPE_SECRET_KEY (Fernet). Not readable by fitpipe_readonly.';
COMMENT ON COLUMN source_credentials.user_id IS 'Participant.';
COMMENT ON COLUMN source_credentials.source IS 'Source the secret is for.';
COMMENT ON COLUMN source_credentials.ciphertext IS 'Fernet token of the secret; plain text never reaches the database.';
COMMENT ON COLUMN source_credentials.key_id IS 'Fingerprint of the key that encrypted it (first 12 hex digits of its SHA-256), for key rotation.';
COMMENT ON COLUMN source_credentials.updated_at IS 'When the secret was last stored or re-encrypted.';

CREATE TABLE timezone_history (
    user_id        integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    effective_from date        NOT NULL,
    timezone       text        NOT NULL CHECK (fitpipe_is_timezone(timezone)),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, effective_from)
);
COMMENT ON TABLE timezone_history IS 'The zone each participant lives in, from a local day on. The zone of day D is the row with the latest effective_from <= D (the earliest row also covers the days before it).';
COMMENT ON COLUMN timezone_history.user_id IS 'Participant.';
COMMENT ON COLUMN timezone_history.effective_from IS 'First local day in this zone.';
COMMENT ON COLUMN timezone_history.timezone IS 'IANA zone name.';
COMMENT ON COLUMN timezone_history.recorded_at IS 'When the change was recorded.';
INSERT INTO timezone_history (user_id, effective_from, timezone) SELECT user_id, study_start, timezone FROM users;

ALTER TABLE ingested_days
    ADD COLUMN state        text        NOT NULL DEFAULT 'complete'
               CHECK (state IN ('provisional', 'complete', 'empty', 'deferred')),
    ADD COLUMN content_hash text,
    ADD COLUMN checked_at   timestamptz,
    ADD COLUMN retry_after  timestamptz,
    ADD COLUMN attempts     integer     NOT NULL DEFAULT 0,
    ADD COLUMN note         text;
UPDATE ingested_days SET state = CASE WHEN rows_loaded = 0 THEN 'empty' ELSE 'complete' END, checked_at = ingested_at;
COMMENT ON TABLE ingested_days IS 'The ledger: one row per (user, local day) a run has touched, with its state. Rows of a loaded day are committed with its ledger row. The cursor is the last settled day of the unbroken run from the study start.';
COMMENT ON COLUMN ingested_days.state IS 'provisional (loaded before the source''s settle window passed; fetched again), complete (settled with data), empty (settled without data) or deferred (the source said retry later; nothing loaded).';
COMMENT ON COLUMN ingested_days.content_hash IS 'SHA-256 of the rows and quarantined records the last fetch produced; an unforced re-fetch with the same hash leaves the day''s rows untouched.';
COMMENT ON COLUMN ingested_days.checked_at IS 'When the source was last asked for the day (ingested_at is when rows were last written).';
COMMENT ON COLUMN ingested_days.retry_after IS 'For deferred days: not before this instant.';
COMMENT ON COLUMN ingested_days.attempts IS 'Fetches that were deferred in a row; reset when the day loads.';
COMMENT ON COLUMN ingested_days.note IS 'Why the day is deferred, or other state detail.';
COMMENT ON COLUMN ingested_days.ingested_at IS 'When the day''s rows were last written.';
CREATE INDEX ingested_days_unsettled ON ingested_days (user_id, day) WHERE state IN ('provisional', 'deferred');

ALTER TABLE ingest_runs ADD COLUMN deferred integer NOT NULL DEFAULT 0;
ALTER TABLE ingest_runs ADD COLUMN unchanged integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN ingest_runs.deferred IS 'User-days the source asked to retry later (rate limit, outage, not synced yet); neither loaded nor failed.';
COMMENT ON COLUMN ingest_runs.unchanged IS 'User-days fetched again whose payloads had not changed; left untouched.';
COMMENT ON COLUMN ingest_runs.user_days IS 'User-days whose rows this run wrote.';

-- Adherence's "no credentials" flag reads the real credential state.
CREATE OR REPLACE FUNCTION fitpipe_adherence(
    as_of date,
    min_wear_share real DEFAULT 0.7,
    max_silence interval DEFAULT interval '48 hours',
    min_nights integer DEFAULT 5,
    min_sleep_minutes integer DEFAULT 180
)
RETURNS TABLE (
    user_id integer, display_name text, timezone text, source text, study_start date,
    study_minutes bigint, worn_minutes bigint, wear_share real, last_data timestamptz, hours_since_data real,
    nights_captured integer, flag_low_wear boolean, flag_no_recent_data boolean, flag_low_sleep_capture boolean,
    flag_no_credentials boolean, flag_count integer
)
LANGUAGE sql STABLE AS $$
    WITH periods AS (
        SELECT u.user_id, u.display_name, u.timezone, u.source, u.study_start,
               (u.study_start::timestamp AT TIME ZONE u.timezone) AS period_start,
               ((as_of + 1)::timestamp AT TIME ZONE u.timezone) AS period_end
        FROM users u
        WHERE u.study_start <= as_of AND u.withdrawn_at IS NULL
    ),
    worn AS (
        SELECT p.user_id, count(r.bucket) AS worn_minutes, max(r.bucket) + interval '1 minute' AS last_data
        FROM periods p
        LEFT JOIN rollup_1min r ON r.user_id = p.user_id AND r.metric = 'heart_rate' AND r.field = 'bpm'
             AND r.n_measured > 0 AND r.bucket >= p.period_start AND r.bucket < p.period_end
        GROUP BY p.user_id
    ),
    nights AS (
        SELECT p.user_id, count(DISTINCT s.date_of_sleep)::integer AS nights
        FROM periods p
        LEFT JOIN sleep_sessions s ON s.user_id = p.user_id AND s.is_main_sleep
             AND s.duration_s >= min_sleep_minutes * 60 AND s.date_of_sleep BETWEEN as_of - 6 AND as_of
        GROUP BY p.user_id
    ),
    measures AS (
        SELECT p.*, (extract(epoch FROM p.period_end - p.period_start) / 60)::bigint AS study_minutes,
               w.worn_minutes, w.last_data, n.nights,
               coalesce((SELECT s.credential_state IN ('missing', 'needs_reconsent') FROM participant_sources s
                          WHERE s.user_id = p.user_id AND s.source = p.source), true) AS no_credentials
        FROM periods p JOIN worn w USING (user_id) JOIN nights n USING (user_id)
    ),
    flagged AS (
        SELECT m.*,
               (m.worn_minutes::real / greatest(m.study_minutes, 1))::real AS share,
               (m.worn_minutes::real / greatest(m.study_minutes, 1)) < min_wear_share AS low_wear,
               (m.last_data IS NULL OR m.period_end - m.last_data > max_silence) AS silent,
               m.nights < min_nights AS low_sleep
        FROM measures m
    )
    SELECT f.user_id, f.display_name, f.timezone, f.source, f.study_start, f.study_minutes, f.worn_minutes,
           f.share, f.last_data,
           (extract(epoch FROM f.period_end - f.last_data) / 3600)::real,
           f.nights, f.low_wear, f.silent, f.low_sleep, f.no_credentials,
           (f.low_wear::int + f.silent::int + f.low_sleep::int + f.no_credentials::int)
    FROM flagged f
    ORDER BY 16 DESC, f.share ASC, f.user_id
$$;
COMMENT ON FUNCTION fitpipe_adherence(date, real, interval, integer, integer) IS
'Adherence flags per enrolled participant as of a local day: wear share below min_wear_share (worn minutes / minutes since the study start), no data for longer than max_silence, fewer than min_nights of the last 7 nights with a main sleep of at least min_sleep_minutes, and no usable credentials (missing, or needing re-consent) for a source that needs them. Worst first.';

-- Dashboards and analysts read through fitpipe_readonly, and anyone who reaches a dashboard can
-- send it any SQL: it must not read secrets, even encrypted ones.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitpipe_readonly') THEN
        REVOKE ALL ON source_credentials FROM fitpipe_readonly;
    END IF;
END $$;
