-- Adherence's study period by the zone history: it starts at midnight of the study's first day
-- in the zone of that day and ends at midnight after the as-of day in the zone of that day, as
-- the local days in wear_days do. Before, both ends used the zone in force today, so a
-- participant who moved had a period shifted by the difference of the two zones' offsets.
-- The function is repeated whole because CREATE OR REPLACE needs its whole body, and a
-- migration that has been applied is never edited; only the periods CTE differs from 0040.

CREATE FUNCTION fitpipe_zone_on(participant integer, day date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT h.timezone FROM timezone_history h
         WHERE h.user_id = participant AND h.effective_from <= day ORDER BY h.effective_from DESC LIMIT 1),
        (SELECT h.timezone FROM timezone_history h WHERE h.user_id = participant ORDER BY h.effective_from LIMIT 1),
        (SELECT u.timezone FROM users u WHERE u.user_id = participant))
$$;
COMMENT ON FUNCTION fitpipe_zone_on(integer, date) IS
'The IANA zone of a participant''s local day: the timezone_history row with the latest effective_from on or before it, the earliest row for days before the first, else users.timezone.';
GRANT EXECUTE ON FUNCTION fitpipe_zone_on(integer, date) TO PUBLIC;

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
               (u.study_start::timestamp AT TIME ZONE fitpipe_zone_on(u.user_id, u.study_start)) AS period_start,
               ((as_of + 1)::timestamp AT TIME ZONE fitpipe_zone_on(u.user_id, as_of + 1)) AS period_end
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
