-- One typed table per metric family, keyed by its natural key so that a re-run can never
-- duplicate a row. The Python catalogue (src/fitpipe/catalogue.py) declares the same tables;
-- tests/test_schema.py fails if the two drift apart. No foreign key to users here: a per-row
-- check would slow the binary COPY, and the loader only writes rows of known users.
--
-- Chunk intervals follow TimescaleDB's advice that the indexes of the chunks being written fit
-- in about a quarter of memory. Sizes assume the largest study we serve: 1,000 participants.

-- heart_rate: 86,400 rows per participant-day -> 86 M rows a day for 1,000 participants; the
-- (user_id, ts) index alone is ~2.5 GB a day, so one-day chunks keep the hot chunk's index in memory.
CREATE TABLE heart_rate (
    user_id integer     NOT NULL,
    ts      timestamptz NOT NULL,
    bpm     real        NOT NULL,
    PRIMARY KEY (user_id, ts)
);
-- The primary key already leads with user_id and covers ts; the default ts index would be a
-- second index to maintain on every row.
SELECT create_hypertable('heart_rate', 'ts', chunk_time_interval => interval '1 day', create_default_indexes => false);
COMMENT ON TABLE heart_rate IS 'Heart rate, one row per second while the device is worn. Hypertable, 1-day chunks.';
COMMENT ON COLUMN heart_rate.user_id IS 'Participant.';
COMMENT ON COLUMN heart_rate.ts IS 'Instant of the sample, from the device''s local time in the participant''s timezone.';
COMMENT ON COLUMN heart_rate.bpm IS 'Beats per minute (valid 25..250). real because the synthetic source has fractional values.';

-- Per-minute series: 1,440 rows per participant-day at most -> ~10 M rows a week for 1,000.
CREATE TABLE active_zone_minutes (
    user_id             integer     NOT NULL,
    ts                  timestamptz NOT NULL,
    active_zone_minutes smallint    NOT NULL,
    fat_burn_minutes    smallint    NOT NULL,
    cardio_minutes      smallint    NOT NULL,
    peak_minutes        smallint    NOT NULL,
    PRIMARY KEY (user_id, ts)
);
SELECT create_hypertable('active_zone_minutes', 'ts', chunk_time_interval => interval '7 days', create_default_indexes => false);
COMMENT ON TABLE active_zone_minutes IS 'Active zone minutes, one row per worn minute. Hypertable, 7-day chunks.';
COMMENT ON COLUMN active_zone_minutes.user_id IS 'Participant.';
COMMENT ON COLUMN active_zone_minutes.ts IS 'Start of the minute.';
COMMENT ON COLUMN active_zone_minutes.active_zone_minutes IS 'Active zone minutes earned in the minute (cardio and peak count double).';
COMMENT ON COLUMN active_zone_minutes.fat_burn_minutes IS 'Fat-burn zone minutes in the minute (0 when the source omits the key).';
COMMENT ON COLUMN active_zone_minutes.cardio_minutes IS 'Cardio zone minutes in the minute (0 when the source omits the key).';
COMMENT ON COLUMN active_zone_minutes.peak_minutes IS 'Peak zone minutes in the minute (0 when the source omits the key).';

-- Sleep-time series: 360-540 rows per night -> ~0.5 M rows a day for 1,000; 30-day chunks.
CREATE TABLE spo2 (
    user_id integer     NOT NULL,
    ts      timestamptz NOT NULL,
    spo2_pct real       NOT NULL,
    PRIMARY KEY (user_id, ts)
);
SELECT create_hypertable('spo2', 'ts', chunk_time_interval => interval '30 days', create_default_indexes => false);
COMMENT ON TABLE spo2 IS 'Blood oxygen saturation, one row per minute during sleep. The night that starts on local day D belongs to day D. Hypertable, 30-day chunks.';
COMMENT ON COLUMN spo2.user_id IS 'Participant.';
COMMENT ON COLUMN spo2.ts IS 'Instant of the sample.';
COMMENT ON COLUMN spo2.spo2_pct IS 'SpO2 in percent (valid 70..100).';

CREATE TABLE hrv_intraday (
    user_id  integer     NOT NULL,
    ts       timestamptz NOT NULL,
    rmssd    real        NOT NULL,
    coverage real        NOT NULL,
    hf       real        NOT NULL,
    lf       real        NOT NULL,
    PRIMARY KEY (user_id, ts)
);
SELECT create_hypertable('hrv_intraday', 'ts', chunk_time_interval => interval '30 days', create_default_indexes => false);
COMMENT ON TABLE hrv_intraday IS 'Heart-rate variability, one row per minute during sleep. The night that starts on local day D belongs to day D. Hypertable, 30-day chunks.';
COMMENT ON COLUMN hrv_intraday.user_id IS 'Participant.';
COMMENT ON COLUMN hrv_intraday.ts IS 'Instant of the sample (the source''s wrapped after-midnight times are unwrapped).';
COMMENT ON COLUMN hrv_intraday.rmssd IS 'Root mean square of successive RR differences, ms (valid 0..300).';
COMMENT ON COLUMN hrv_intraday.coverage IS 'Share of the minute with usable beats, 0..1.';
COMMENT ON COLUMN hrv_intraday.hf IS 'High-frequency power, ms^2 (valid 0..20000).';
COMMENT ON COLUMN hrv_intraday.lf IS 'Low-frequency power, ms^2 (valid 0..20000).';

-- Per-night and per-day tables hold one row per participant-day: ~0.4 M rows a year for
-- 1,000 participants, so one chunk a year is plenty.
CREATE TABLE breathing_rate (
    user_id    integer NOT NULL,
    day        date    NOT NULL,
    full_sleep real,
    deep_sleep real,
    light_sleep real,
    rem_sleep  real,
    PRIMARY KEY (user_id, day)
);
SELECT create_hypertable('breathing_rate', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE breathing_rate IS 'Breathing rate per night and sleep stage, breaths per minute (valid 4..40). Hypertable, 1-year chunks.';
COMMENT ON COLUMN breathing_rate.user_id IS 'Participant.';
COMMENT ON COLUMN breathing_rate.day IS 'Local day on whose evening the night starts (the source''s dateTime).';
COMMENT ON COLUMN breathing_rate.full_sleep IS 'Average over the whole night.';
COMMENT ON COLUMN breathing_rate.deep_sleep IS 'Average during deep sleep.';
COMMENT ON COLUMN breathing_rate.light_sleep IS 'Average during light sleep.';
COMMENT ON COLUMN breathing_rate.rem_sleep IS 'Average during REM sleep.';

CREATE TABLE sleep_sessions (
    user_id               integer     NOT NULL,
    start_ts              timestamptz NOT NULL,
    end_ts                timestamptz NOT NULL,
    date_of_sleep         date        NOT NULL,
    log_id                bigint      NOT NULL,
    is_main_sleep         boolean     NOT NULL,
    duration_s            integer     NOT NULL,
    efficiency            smallint    NOT NULL,
    minutes_asleep        smallint    NOT NULL,
    minutes_awake         smallint    NOT NULL,
    minutes_to_fall_asleep smallint   NOT NULL,
    minutes_after_wakeup  smallint    NOT NULL,
    time_in_bed           smallint    NOT NULL,
    PRIMARY KEY (user_id, start_ts)
);
SELECT create_hypertable('sleep_sessions', 'start_ts', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE sleep_sessions IS 'Sleep logs, one row per session. The night that starts on local day D belongs to day D. Hypertable, 1-year chunks.';
COMMENT ON COLUMN sleep_sessions.user_id IS 'Participant.';
COMMENT ON COLUMN sleep_sessions.start_ts IS 'When the session started.';
COMMENT ON COLUMN sleep_sessions.end_ts IS 'When the session ended.';
COMMENT ON COLUMN sleep_sessions.date_of_sleep IS 'The source''s dateOfSleep.';
COMMENT ON COLUMN sleep_sessions.log_id IS 'The source''s log id (not a key: synthetic ids are not stable across sources).';
COMMENT ON COLUMN sleep_sessions.is_main_sleep IS 'True for the night''s main sleep, false for naps.';
COMMENT ON COLUMN sleep_sessions.duration_s IS 'Duration in seconds (the source gives milliseconds).';
COMMENT ON COLUMN sleep_sessions.efficiency IS 'Sleep efficiency score, 0..100.';
COMMENT ON COLUMN sleep_sessions.minutes_asleep IS 'Minutes asleep.';
COMMENT ON COLUMN sleep_sessions.minutes_awake IS 'Minutes awake during the session.';
COMMENT ON COLUMN sleep_sessions.minutes_to_fall_asleep IS 'Minutes from going to bed to falling asleep.';
COMMENT ON COLUMN sleep_sessions.minutes_after_wakeup IS 'Minutes in bed after waking.';
COMMENT ON COLUMN sleep_sessions.time_in_bed IS 'Minutes in bed.';

-- ~40 segments per night. The stage is in the key because wearipedia sometimes starts two long
-- segments at the same second.
CREATE TABLE sleep_stages (
    user_id  integer     NOT NULL,
    start_ts timestamptz NOT NULL,
    is_short boolean     NOT NULL,
    stage    text        NOT NULL CHECK (stage IN ('wake', 'light', 'deep', 'rem', 'asleep', 'restless', 'awake')),
    seconds  integer     NOT NULL,
    PRIMARY KEY (user_id, start_ts, is_short, stage)
);
SELECT create_hypertable('sleep_stages', 'start_ts', chunk_time_interval => interval '90 days', create_default_indexes => false);
COMMENT ON TABLE sleep_stages IS 'Sleep stage segments of every session (levels.data and levels.shortData). Hypertable, 90-day chunks.';
COMMENT ON COLUMN sleep_stages.user_id IS 'Participant.';
COMMENT ON COLUMN sleep_stages.start_ts IS 'When the segment started.';
COMMENT ON COLUMN sleep_stages.is_short IS 'True for the short wake segments (levels.shortData) that overlay the long ones.';
COMMENT ON COLUMN sleep_stages.stage IS 'wake, light, deep or rem (stages logs); asleep, restless or awake (classic logs).';
COMMENT ON COLUMN sleep_stages.seconds IS 'Length of the segment in seconds.';

CREATE TABLE heart_rate_daily (
    user_id                  integer NOT NULL,
    day                      date    NOT NULL,
    resting_bpm              real,
    minutes_out_of_range     smallint,
    minutes_fat_burn         smallint,
    minutes_cardio           smallint,
    minutes_peak             smallint,
    calories_out_of_range    real,
    calories_fat_burn        real,
    calories_cardio          real,
    calories_peak            real,
    PRIMARY KEY (user_id, day)
);
SELECT create_hypertable('heart_rate_daily', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE heart_rate_daily IS 'Daily heart-rate summary: resting heart rate and time and calories in each zone. Hypertable, 1-year chunks.';
COMMENT ON COLUMN heart_rate_daily.user_id IS 'Participant.';
COMMENT ON COLUMN heart_rate_daily.day IS 'Local day.';
COMMENT ON COLUMN heart_rate_daily.resting_bpm IS 'Resting heart rate, bpm (valid 25..150).';
COMMENT ON COLUMN heart_rate_daily.minutes_out_of_range IS 'Minutes below the fat-burn zone.';
COMMENT ON COLUMN heart_rate_daily.minutes_fat_burn IS 'Minutes in the fat-burn zone.';
COMMENT ON COLUMN heart_rate_daily.minutes_cardio IS 'Minutes in the cardio zone.';
COMMENT ON COLUMN heart_rate_daily.minutes_peak IS 'Minutes in the peak zone.';
COMMENT ON COLUMN heart_rate_daily.calories_out_of_range IS 'Calories burned below the fat-burn zone.';
COMMENT ON COLUMN heart_rate_daily.calories_fat_burn IS 'Calories burned in the fat-burn zone.';
COMMENT ON COLUMN heart_rate_daily.calories_cardio IS 'Calories burned in the cardio zone.';
COMMENT ON COLUMN heart_rate_daily.calories_peak IS 'Calories burned in the peak zone.';

CREATE TABLE daily_activity (
    user_id                 integer NOT NULL,
    day                     date    NOT NULL,
    steps                   integer,
    distance_km             real,
    minutes_sedentary       smallint,
    minutes_lightly_active  smallint,
    minutes_fairly_active   smallint,
    minutes_very_active     smallint,
    PRIMARY KEY (user_id, day)
);
SELECT create_hypertable('daily_activity', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE daily_activity IS 'Daily activity totals. Hypertable, 1-year chunks.';
COMMENT ON COLUMN daily_activity.user_id IS 'Participant.';
COMMENT ON COLUMN daily_activity.day IS 'Local day.';
COMMENT ON COLUMN daily_activity.steps IS 'Steps (valid 0..100000).';
COMMENT ON COLUMN daily_activity.distance_km IS 'Distance in kilometres (valid 0..200).';
COMMENT ON COLUMN daily_activity.minutes_sedentary IS 'Sedentary minutes (0..1500: a 25-hour DST day).';
COMMENT ON COLUMN daily_activity.minutes_lightly_active IS 'Lightly active minutes.';
COMMENT ON COLUMN daily_activity.minutes_fairly_active IS 'Fairly active minutes.';
COMMENT ON COLUMN daily_activity.minutes_very_active IS 'Very active minutes.';

CREATE TABLE hrv_daily (
    user_id     integer NOT NULL,
    day         date    NOT NULL,
    daily_rmssd real,
    deep_rmssd  real,
    PRIMARY KEY (user_id, day)
);
SELECT create_hypertable('hrv_daily', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE hrv_daily IS 'Daily heart-rate variability summary. Hypertable, 1-year chunks.';
COMMENT ON COLUMN hrv_daily.user_id IS 'Participant.';
COMMENT ON COLUMN hrv_daily.day IS 'Local day.';
COMMENT ON COLUMN hrv_daily.daily_rmssd IS 'RMSSD over the main sleep, ms (valid 0..300).';
COMMENT ON COLUMN hrv_daily.deep_rmssd IS 'RMSSD during deep sleep, ms (valid 0..300).';
