-- Adherence over each participant's own window. A participant whose data comes only from archives
-- (a retrospective Takeout import) has no data after the archive's last day: measured up to the
-- cohort's newest day they showed "wear 4%, 55,646 h since data". Their window now ends at the last
-- day their source delivered, and they are marked ended instead of being flagged as silent.
-- The function's result gains two columns (window_end, ended), so it is dropped and created again;
-- everything else is 0051's body with as_of replaced by the participant's window end.

DROP FUNCTION fitpipe_adherence(date, real, interval, integer, integer);

CREATE FUNCTION fitpipe_adherence(
    as_of date,
    min_wear_share real DEFAULT 0.7,
    max_silence interval DEFAULT interval '48 hours',
    min_nights integer DEFAULT 5,
    min_sleep_minutes integer DEFAULT 180,
    archive_sources text[] DEFAULT ARRAY['takeout']
)
RETURNS TABLE (
    user_id integer, display_name text, timezone text, source text, study_start date,
    study_minutes bigint, worn_minutes bigint, wear_share real, last_data timestamptz, hours_since_data real,
    nights_captured integer, flag_low_wear boolean, flag_no_recent_data boolean, flag_low_sleep_capture boolean,
    flag_no_credentials boolean, flag_count integer, window_end date, ended boolean
)
LANGUAGE sql STABLE AS $$
    WITH enrolled AS (
        SELECT u.user_id, u.display_name, u.timezone, u.source, u.study_start,
               CASE WHEN u.source = ANY(archive_sources) THEN
                   greatest(u.study_start, least(as_of, coalesce(
                       (SELECT max(d.day) FROM ingested_days d
                        WHERE d.user_id = u.user_id AND d.state IN ('complete', 'empty', 'provisional')
                          AND d.day <= as_of), as_of)))
               ELSE as_of END AS window_end
        FROM users u
        WHERE u.study_start <= as_of AND u.withdrawn_at IS NULL
    ),
    periods AS (
        SELECT e.*, e.window_end < as_of AS ended,
               (e.study_start::timestamp AT TIME ZONE fitpipe_zone_on(e.user_id, e.study_start)) AS period_start,
               ((e.window_end + 1)::timestamp AT TIME ZONE fitpipe_zone_on(e.user_id, e.window_end + 1)) AS period_end
        FROM enrolled e
    ),
    days AS (
        -- Per participant one running-total row and at most 7 nightly rows: the cost grows with
        -- participants, not with the length of the study.
        SELECT p.user_id, coalesce(total.worn, 0)::bigint AS worn_minutes, total.last AS last_data,
               coalesce(nights.n, 0)::integer AS nights
        FROM periods p
        LEFT JOIN LATERAL (
            SELECT w.worn_minutes_to_date AS worn, w.last_measured_to_date AS last FROM wear_days w
            WHERE w.user_id = p.user_id AND w.day <= p.window_end ORDER BY w.day DESC LIMIT 1) total ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS n FROM wear_days w
            WHERE w.user_id = p.user_id AND w.day > p.window_end - 7 AND w.day <= p.window_end
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
           (f.low_wear::int + f.silent::int + f.low_sleep::int + f.no_credentials::int),
           f.window_end, f.ended
    FROM flagged f
    ORDER BY 16 DESC, f.share ASC, f.user_id
$$;
COMMENT ON FUNCTION fitpipe_adherence(date, real, interval, integer, integer, text[]) IS
'Adherence flags per enrolled participant as of a local day, from wear_days, over each participant''s own window: from the study start to as_of, or, for a participant of an archive source (archive_sources: their data arrives only in archives, e.g. a retrospective Takeout import), to the last day their source delivered (window_end; ended when before as_of). Flags: wear share below min_wear_share (worn minutes / minutes of the window), no data for longer than max_silence before the window''s end, fewer than min_nights of the window''s last 7 nights with a main sleep of at least min_sleep_minutes, and no usable credentials (missing, or needing re-consent) for a source that needs them. Worst first.';
-- The dashboards' read-only role called the old function by grant (0005); it calls this one too.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitpipe_readonly') THEN
        GRANT EXECUTE ON FUNCTION fitpipe_adherence(date, real, interval, integer, integer, text[]) TO fitpipe_readonly;
    END IF;
END $$;
