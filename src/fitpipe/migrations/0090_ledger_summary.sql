-- `fitpipe status` and the cohort page of `fitpipe serve` report, per participant, figures that
-- come from every ledger row of that participant: counts per state, the cursor, missing days,
-- rows per metric. Reading them from ingested_days costs three passes over the whole ledger
-- (~3 s for 1,000 participants x a year on 2 cores). Here they are kept per participant in
-- ledger_summary, recomputed from that participant's ledger rows by a trigger on every statement
-- that changes them, in the same transaction: status reads one row per participant, and a write
-- pays for re-reading only its own participants' rows (an index range of ~one row per day).

CREATE TABLE ledger_summary (
    user_id           integer PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    days_ingested     integer NOT NULL DEFAULT 0,
    last_ingested     date,
    quarantined       bigint  NOT NULL DEFAULT 0,
    complete          integer NOT NULL DEFAULT 0,
    empty             integer NOT NULL DEFAULT 0,
    provisional_days  date[]  NOT NULL DEFAULT '{}',
    deferred_days     date[]  NOT NULL DEFAULT '{}',
    rollup_only       integer NOT NULL DEFAULT 0,
    rollup_only_first date,
    rollup_only_last  date,
    missing_days      date[]  NOT NULL DEFAULT '{}',
    cursor_day        date,
    rows_by_metric    jsonb   NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE ledger_summary IS 'Per participant, what status reports from the ledger (ingested_days), recomputed from that participant''s ledger rows in the same transaction as every change to them (trigger ledger_summary_after_*). A participant without ledger rows has no row here.';
COMMENT ON COLUMN ledger_summary.user_id IS 'Participant.';
COMMENT ON COLUMN ledger_summary.days_ingested IS 'Ledger days from the study start on that are not deferred.';
COMMENT ON COLUMN ledger_summary.last_ingested IS 'Last such day.';
COMMENT ON COLUMN ledger_summary.quarantined IS 'Quarantined records of the days from the study start on.';
COMMENT ON COLUMN ledger_summary.complete IS 'Days from the study start on in state complete.';
COMMENT ON COLUMN ledger_summary.empty IS 'Days from the study start on in state empty.';
COMMENT ON COLUMN ledger_summary.provisional_days IS 'Days from the study start on in state provisional, in order.';
COMMENT ON COLUMN ledger_summary.deferred_days IS 'Days from the study start on in state deferred, in order.';
COMMENT ON COLUMN ledger_summary.rollup_only IS 'Days from the study start on whose raw rows raw retention dropped (raw_dropped_at set).';
COMMENT ON COLUMN ledger_summary.rollup_only_first IS 'First such day.';
COMMENT ON COLUMN ledger_summary.rollup_only_last IS 'Last such day.';
COMMENT ON COLUMN ledger_summary.missing_days IS 'Days between the study start and the last ledger day (any state) without a ledger row, in order.';
COMMENT ON COLUMN ledger_summary.cursor_day IS 'Last day of the unbroken run of settled (complete or empty) days from the study start; NULL when the study start is not settled.';
COMMENT ON COLUMN ledger_summary.rows_by_metric IS 'Sum of ingested_days.rows_by_metric per metric over all of the participant''s ledger rows (days before the study start included, as status always counted them).';

CREATE FUNCTION fitpipe_refresh_ledger_summary(changed integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Lock the participants' summary rows first, in id order (no deadlock between two refreshes).
    -- Under READ COMMITTED the recompute below then takes a snapshot that sees every ledger change
    -- committed by a concurrent writer of the same participant, so neither overwrites the other's.
    INSERT INTO ledger_summary (user_id)
    SELECT u.user_id FROM users u WHERE u.user_id = ANY(changed) ORDER BY u.user_id
    ON CONFLICT (user_id) DO NOTHING;
    PERFORM 1 FROM ledger_summary WHERE user_id = ANY(changed) ORDER BY user_id FOR UPDATE;

    WITH days AS (
        SELECT d.user_id, d.day, d.state, d.quarantined, d.raw_dropped_at, u.study_start,
               d.day >= u.study_start AS in_study
        FROM ingested_days d JOIN users u USING (user_id)
        WHERE d.user_id = ANY(changed)
    ),
    counted AS (
        SELECT user_id, study_start,
               count(*) FILTER (WHERE in_study AND state <> 'deferred') AS days_ingested,
               max(day) FILTER (WHERE in_study AND state <> 'deferred') AS last_ingested,
               coalesce(sum(quarantined) FILTER (WHERE in_study), 0) AS quarantined,
               count(*) FILTER (WHERE in_study AND state = 'complete') AS complete,
               count(*) FILTER (WHERE in_study AND state = 'empty') AS empty,
               coalesce(array_agg(day ORDER BY day) FILTER (WHERE in_study AND state = 'provisional'), '{}')
                   AS provisional_days,
               coalesce(array_agg(day ORDER BY day) FILTER (WHERE in_study AND state = 'deferred'), '{}')
                   AS deferred_days,
               count(*) FILTER (WHERE in_study AND raw_dropped_at IS NOT NULL) AS rollup_only,
               min(day) FILTER (WHERE in_study AND raw_dropped_at IS NOT NULL) AS rollup_only_first,
               max(day) FILTER (WHERE in_study AND raw_dropped_at IS NOT NULL) AS rollup_only_last,
               max(day) FILTER (WHERE in_study) AS last_day
        FROM days GROUP BY user_id, study_start
    ),
    -- Consecutive settled days share day - row_number(); the run from the study start has study_start - 1.
    islands AS (
        SELECT user_id, max(day) AS cursor_day
        FROM (SELECT user_id, day, study_start,
                     day - (row_number() OVER (PARTITION BY user_id ORDER BY day))::int AS island
              FROM days WHERE in_study AND state IN ('complete', 'empty')) numbered
        WHERE island = study_start - 1
        GROUP BY user_id
    ),
    sums AS (
        SELECT user_id, jsonb_object_agg(metric, total) AS rows_by_metric
        FROM (SELECT d.user_id, m.key AS metric, sum(m.value::bigint) AS total
              FROM ingested_days d CROSS JOIN LATERAL jsonb_each_text(d.rows_by_metric) AS m
              WHERE d.user_id = ANY(changed)
              GROUP BY d.user_id, m.key) per_metric
        GROUP BY user_id
    )
    UPDATE ledger_summary s
    SET days_ingested = c.days_ingested, last_ingested = c.last_ingested, quarantined = c.quarantined,
        complete = c.complete, empty = c.empty, provisional_days = c.provisional_days,
        deferred_days = c.deferred_days, rollup_only = c.rollup_only, rollup_only_first = c.rollup_only_first,
        rollup_only_last = c.rollup_only_last, cursor_day = i.cursor_day,
        rows_by_metric = coalesce(m.rows_by_metric, '{}'),
        missing_days = (SELECT coalesce(array_agg(g.day::date ORDER BY g.day), '{}')
                          FROM generate_series(c.study_start, c.last_day, interval '1 day') AS g(day)
                         WHERE NOT EXISTS (SELECT 1 FROM ingested_days x
                                            WHERE x.user_id = c.user_id AND x.day = g.day::date))
    FROM counted c LEFT JOIN islands i USING (user_id) LEFT JOIN sums m USING (user_id)
    WHERE s.user_id = c.user_id;

    DELETE FROM ledger_summary s
    WHERE s.user_id = ANY(changed) AND NOT EXISTS (SELECT 1 FROM ingested_days d WHERE d.user_id = s.user_id);
END
$$;
COMMENT ON FUNCTION fitpipe_refresh_ledger_summary(integer[]) IS 'Recompute ledger_summary for these participants from their ingested_days rows (called by the ledger''s triggers; callable by hand to repair).';

CREATE FUNCTION fitpipe_ledger_summary_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fitpipe_refresh_ledger_summary((SELECT array_agg(DISTINCT user_id) FROM new_rows));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION fitpipe_ledger_summary_after_insert() IS 'Statement trigger: refresh the summary of the participants whose ledger rows were inserted.';

CREATE FUNCTION fitpipe_ledger_summary_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fitpipe_refresh_ledger_summary(
        (SELECT array_agg(DISTINCT user_id) FROM (SELECT user_id FROM new_rows UNION SELECT user_id FROM old_rows) s)
    );
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION fitpipe_ledger_summary_after_update() IS 'Statement trigger: refresh the summary of the participants whose ledger rows were updated.';

CREATE FUNCTION fitpipe_ledger_summary_after_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fitpipe_refresh_ledger_summary((SELECT array_agg(DISTINCT user_id) FROM old_rows));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION fitpipe_ledger_summary_after_delete() IS 'Statement trigger: refresh the summary of the participants whose ledger rows were deleted.';

CREATE FUNCTION fitpipe_ledger_summary_after_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ledger_summary;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION fitpipe_ledger_summary_after_truncate() IS 'Statement trigger: an emptied ledger has no summary.';

CREATE FUNCTION fitpipe_ledger_summary_after_study_start() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fitpipe_refresh_ledger_summary(
        (SELECT array_agg(n.user_id) FROM new_rows n JOIN old_rows o USING (user_id)
          WHERE n.study_start IS DISTINCT FROM o.study_start)
    );
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION fitpipe_ledger_summary_after_study_start() IS 'Statement trigger: a moved study start changes which ledger days count.';

CREATE TRIGGER ledger_summary_after_insert AFTER INSERT ON ingested_days
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fitpipe_ledger_summary_after_insert();
CREATE TRIGGER ledger_summary_after_update AFTER UPDATE ON ingested_days
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fitpipe_ledger_summary_after_update();
CREATE TRIGGER ledger_summary_after_delete AFTER DELETE ON ingested_days
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION fitpipe_ledger_summary_after_delete();
CREATE TRIGGER ledger_summary_after_truncate AFTER TRUNCATE ON ingested_days
    FOR EACH STATEMENT EXECUTE FUNCTION fitpipe_ledger_summary_after_truncate();
CREATE TRIGGER ledger_summary_after_study_start AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fitpipe_ledger_summary_after_study_start();

SELECT fitpipe_refresh_ledger_summary(array_agg(user_id)) FROM users;
