-- The loader now writes a day's 1-minute rollup rows itself, from the arrays it has just COPYed
-- (fitpipe/derive/minutes.py), in the same transaction as the raw rows. Its change record then
-- only asks the refresh for the levels above (1 h, 1 d, wear_days). Every other writer (impute,
-- deletions) leaves the flag false, so the refresh rebuilds those minutes from the raw tables.
ALTER TABLE rollup_invalidations ADD COLUMN minutes_current boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN rollup_invalidations.minutes_current IS
    'True when the writer already rewrote rollup_1min for this range (the loader does); the refresh then rebuilds only rollup_1h, rollup_1d and wear_days from it.';
