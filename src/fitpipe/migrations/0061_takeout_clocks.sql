-- The clock each file family of an imported archive was read in, decided from the archive's own
-- evidence (issue 20): a real 2018 export wrote its heart-rate and steps JSON in UTC, later ones
-- in local time, and some Google-era CSVs wrote the local clock with a Z.
ALTER TABLE takeout_imports ADD COLUMN clocks jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN takeout_imports.clocks IS
'Per file family whose clock was in question (e.g. heart-rate-json): {origin, clock (utc or local), by (override, twin, dst, sleep or default), figure (the evidence that decided it, in words)}.';
