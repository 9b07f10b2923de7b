-- The google-health source (Google Health API v4).

-- The API reports neither an HRV sample's coverage nor a sleep's efficiency score; a missing
-- value is NULL rather than a made-up number.
ALTER TABLE hrv_intraday ALTER COLUMN coverage DROP NOT NULL;
COMMENT ON COLUMN hrv_intraday.coverage IS 'Share of the minute with usable beats, 0..1. NULL when the source does not report it (google-health).';
ALTER TABLE sleep_sessions ALTER COLUMN efficiency DROP NOT NULL;
COMMENT ON COLUMN sleep_sessions.efficiency IS 'Sleep efficiency score, 0..100. NULL when the source does not report it (google-health).';

-- Every Google Health point carries the UTC offset of the device's clock. Where it equals the
-- offset of the participant's zone (timezone_history) it says nothing new and is not kept; where
-- it differs, the participant was probably travelling and their day is cut in the wrong zone.
CREATE TABLE device_utc_offsets (
    user_id      integer     NOT NULL,
    day          date        NOT NULL,
    utc_offset_s integer     NOT NULL CHECK (utc_offset_s BETWEEN -50400 AND 50400),
    points       integer     NOT NULL,
    first_ts     timestamptz NOT NULL,
    last_ts      timestamptz NOT NULL,
    PRIMARY KEY (user_id, day, utc_offset_s)
);
SELECT create_hypertable('device_utc_offsets', 'day', chunk_time_interval => interval '365 days', create_default_indexes => false);
COMMENT ON TABLE device_utc_offsets IS 'UTC offsets a device reported (Google Health API utcOffset) that differ from the offset of the participant''s zone on that local day: a sign of travel not yet recorded with `fitpipe participants set-timezone`. Hypertable, 1-year chunks.';
COMMENT ON COLUMN device_utc_offsets.user_id IS 'Participant.';
COMMENT ON COLUMN device_utc_offsets.day IS 'Local day (by the participant''s zone) the points belong to.';
COMMENT ON COLUMN device_utc_offsets.utc_offset_s IS 'The device''s UTC offset, seconds east of UTC.';
COMMENT ON COLUMN device_utc_offsets.points IS 'Data points of the day reported at this offset.';
COMMENT ON COLUMN device_utc_offsets.first_ts IS 'First of them.';
COMMENT ON COLUMN device_utc_offsets.last_ts IS 'Last of them.';
