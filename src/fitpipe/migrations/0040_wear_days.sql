-- Adherence at a year's scale: one row per participant and local day, kept by the same
-- incremental refresh as the rollups, so adherence reads ~365 rows per participant-year instead
-- of every measured minute since the study start.

CREATE TABLE wear_days (
    user_id            integer     NOT NULL REFERENCES users ON DELETE CASCADE,
    day                date        NOT NULL,
    worn_minutes       smallint    NOT NULL CHECK (worn_minutes BETWEEN 0 AND 1500),
    first_measured     timestamptz,
    last_measured      timestamptz,
    main_sleep_seconds integer,
    worn_minutes_to_date integer NOT NULL DEFAULT 0,
    last_measured_to_date timestamptz,
    PRIMARY KEY (user_id, day)
);
COMMENT ON TABLE wear_days IS 'Per participant and local day: minutes with a measured heart rate, first and last measured minute, and the main sleep ending that day. Rebuilt with the rollups for every local day a refresh touches; read by fitpipe_adherence().';
COMMENT ON COLUMN wear_days.user_id IS 'Participant.';
COMMENT ON COLUMN wear_days.day IS 'Local day in the zone in force that day.';
COMMENT ON COLUMN wear_days.worn_minutes IS '1-minute buckets of the day with a measured heart rate (rollup_1min, heart_rate/bpm, n_measured > 0).';
COMMENT ON COLUMN wear_days.first_measured IS 'Start of the first measured minute of the day; NULL when none.';
COMMENT ON COLUMN wear_days.last_measured IS 'End of the last measured minute of the day (its start + 1 minute); NULL when none.';
COMMENT ON COLUMN wear_days.main_sleep_seconds IS 'Longest main sleep with date_of_sleep = day, in seconds; NULL when none.';
COMMENT ON COLUMN wear_days.worn_minutes_to_date IS 'Running total of worn_minutes from the participant''s study start to this day, so adherence reads one row per participant however long the study.';
COMMENT ON COLUMN wear_days.last_measured_to_date IS 'Latest last_measured from the study start to this day.';

-- Stores upgraded from earlier versions: today's rollups, read in each participant's current zone
-- (`fitpipe aggregate refresh --full` rebuilds it by the zone history).
INSERT INTO wear_days (user_id, day, worn_minutes, first_measured, last_measured)
SELECT r.user_id, (r.bucket AT TIME ZONE u.timezone)::date, count(*), min(r.bucket), max(r.bucket) + interval '1 minute'
FROM rollup_1min r JOIN users u USING (user_id)
WHERE r.metric = 'heart_rate' AND r.field = 'bpm' AND r.n_measured > 0
GROUP BY 1, 2;
INSERT INTO wear_days (user_id, day, worn_minutes, main_sleep_seconds)
SELECT user_id, date_of_sleep, 0, max(duration_s) FROM sleep_sessions WHERE is_main_sleep GROUP BY 1, 2
ON CONFLICT (user_id, day) DO UPDATE SET main_sleep_seconds = excluded.main_sleep_seconds;

UPDATE wear_days w SET worn_minutes_to_date = s.worn, last_measured_to_date = s.last
FROM (SELECT d.user_id, d.day,
             coalesce(sum(CASE WHEN d.day >= u.study_start THEN d.worn_minutes END)
                      OVER (PARTITION BY d.user_id ORDER BY d.day), 0) AS worn,
             max(CASE WHEN d.day >= u.study_start THEN d.last_measured END)
                 OVER (PARTITION BY d.user_id ORDER BY d.day) AS last
      FROM wear_days d JOIN users u USING (user_id)) s
WHERE w.user_id = s.user_id AND w.day = s.day;

-- The dashboards' "as of" day (max(day) of the ledger) becomes an index lookup.
CREATE INDEX ingested_days_day ON ingested_days (day);

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
    days AS (
        -- Per participant one running-total row and at most 7 nightly rows: the cost grows with
        -- participants, not with the length of the study.
        SELECT p.user_id, coalesce(total.worn, 0)::bigint AS worn_minutes, total.last AS last_data,
               coalesce(nights.n, 0)::integer AS nights
        FROM periods p
        LEFT JOIN LATERAL (
            SELECT w.worn_minutes_to_date AS worn, w.last_measured_to_date AS last FROM wear_days w
            WHERE w.user_id = p.user_id AND w.day <= as_of ORDER BY w.day DESC LIMIT 1) total ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS n FROM wear_days w
            WHERE w.user_id = p.user_id AND w.day > as_of - 7 AND w.day <= as_of
              AND w.main_sleep_seconds >= min_sleep_minutes * 60) nights ON true
    ),
    measures AS (
        SELECT p.*, (extract(epoch FROM p.period_end - p.period_start) / 60)::bigint AS study_minutes,
               d.worn_minutes, d.last_data, d.nights,
               coalesce((SELECT s.credential_state IN ('missing', 'needs_reconsent') FROM participant_sources s
                          WHERE s.user_id = p.user_id AND s.source = p.source), true) AS no_credentials
        FROM periods p JOIN days d USING (user_id)
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
'Adherence flags per enrolled participant as of a local day, from wear_days: wear share below min_wear_share (worn minutes / minutes since the study start), no data for longer than max_silence, fewer than min_nights of the last 7 nights with a main sleep of at least min_sleep_minutes, and no usable credentials (missing, or needing re-consent) for a source that needs them. Worst first.';
