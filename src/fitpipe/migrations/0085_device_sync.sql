-- Late data (issue 21): a day is settled by evidence that the participant's device has synced past
-- it, not by the calendar alone. Sources that can say when a device last synced (google-health:
-- users/me/pairedDevices) record each paired device here, in the transaction of the day whose fetch
-- asked; status and adherence read it. Sources without such evidence (synthetic, takeout) write nothing.
CREATE TABLE participant_devices (
    user_id         integer     NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    source          text        NOT NULL,
    device          text        NOT NULL,
    device_type     text,
    device_version  text,
    last_sync_time  timestamptz,
    battery_level   integer     CHECK (battery_level BETWEEN 0 AND 100),
    battery_status  text,
    checked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source, device)
);
COMMENT ON TABLE participant_devices IS 'The devices paired to a participant''s account, as their source last reported them (google-health: users/me/pairedDevices): when each last synced and its battery. A day whose end is after the latest sync stays provisional instead of settling empty; an empty settled day the device synced past is missing. Rows of devices no longer paired are removed at the next report; all go with the participant (withdraw --delete-data).';
COMMENT ON COLUMN participant_devices.user_id IS 'Participant.';
COMMENT ON COLUMN participant_devices.source IS 'The source that reported the device (participant_sources.source).';
COMMENT ON COLUMN participant_devices.device IS 'The source''s id of the device (google-health: the resource name users/me/pairedDevices/ID).';
COMMENT ON COLUMN participant_devices.device_type IS 'Kind of device as the source names it (google-health: TRACKER or SCALE); only trackers count as sync evidence.';
COMMENT ON COLUMN participant_devices.device_version IS 'Product name of the device (e.g. Pixel Watch 3), as reported.';
COMMENT ON COLUMN participant_devices.last_sync_time IS 'When the device last synced with its phone app; NULL when not reported. Nothing measured after it has reached the source yet.';
COMMENT ON COLUMN participant_devices.battery_level IS 'Battery level in percent at the last report; NULL when not reported.';
COMMENT ON COLUMN participant_devices.battery_status IS 'Battery status as reported (google-health: High, Medium, Low or Empty).';
COMMENT ON COLUMN participant_devices.checked_at IS 'When fitpipe last asked the source about the device.';
