-- Raw retention (fitpipe maintain --raw-retention-days N): whole chunks of the 1 Hz raw tables
-- are dropped once every day in them is settled and rolled up. The ledger records which
-- participant-days lost raw rows that way, so the rollup refresh keeps their rollups instead of
-- rebuilding them from rows that are gone, and status can say which days have rollups only.
ALTER TABLE ingested_days ADD COLUMN raw_dropped_at timestamptz;
COMMENT ON COLUMN ingested_days.raw_dropped_at IS 'When raw retention (fitpipe maintain --raw-retention-days) dropped 1 Hz raw rows of this day (heart_rate, heart_rate_confidence): the day has rollups only. NULL while its raw rows are all there; a re-ingest (backfill --force) writes them again and clears it.';
CREATE INDEX ingested_days_rollup_only ON ingested_days (user_id, day) WHERE raw_dropped_at IS NOT NULL;
COMMENT ON INDEX ingested_days_rollup_only IS 'The rollup-only days, which every rollup refresh and status read.';
