-- Adherence: the study team's flags per participant, as one SQL function so that
-- `fitpipe adherence` and the Grafana Adherence dashboard compute exactly the same thing.

CREATE TABLE source_credentials (
    user_id     integer     PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    source      text        NOT NULL,
    secret_ref  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE source_credentials IS 'Which participants have credentials on file for a source that needs them (Google Health API). Holds a reference to the secret store, never the token.';
COMMENT ON COLUMN source_credentials.user_id IS 'Participant.';
COMMENT ON COLUMN source_credentials.source IS 'Source the credentials are for.';
COMMENT ON COLUMN source_credentials.secret_ref IS 'Where the token is kept (e.g. a vault path); never the token itself.';
COMMENT ON COLUMN source_credentials.updated_at IS 'When the credentials were last renewed.';

CREATE FUNCTION fitpipe_adherence(
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
        WHERE u.study_start <= as_of
    ),
    worn AS (
        -- A minute counts as worn when the 1-minute rollup has a measured heart rate.
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
               p.source <> 'synthetic' AND NOT EXISTS (
                   SELECT 1 FROM source_credentials c WHERE c.user_id = p.user_id AND c.source = p.source
               ) AS no_credentials
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
'Adherence flags per participant as of a local day: wear share below min_wear_share (worn minutes / minutes since the study start), no data for longer than max_silence, fewer than min_nights of the last 7 nights with a main sleep of at least min_sleep_minutes, and no credentials on file for a source that needs them (never for synthetic). Worst first.';
