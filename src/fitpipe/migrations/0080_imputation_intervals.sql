-- Each imputed minute carries a 90% predictive interval beside its value (issue 24). Rows written
-- before this migration have none (NULL); `fitpipe impute` fills both for every row it writes.
ALTER TABLE imputed_values
    ADD COLUMN lower real,
    ADD COLUMN upper real,
    ADD CONSTRAINT imputed_values_interval_holds_value
        CHECK ((lower IS NULL) = (upper IS NULL) AND (lower IS NULL OR (lower <= value AND value <= upper)));

COMMENT ON COLUMN imputed_values.lower IS 'Lower end of the 90% predictive interval for the true value of the minute, calibrated on held-out stretches of the participant''s own measured data; NULL for rows imputed before intervals existed.';
COMMENT ON COLUMN imputed_values.upper IS 'Upper end of the 90% predictive interval (see lower).';
COMMENT ON COLUMN imputed_values.method IS 'Imputation method: profile (participant''s daily profile blended with the gap edges), statespace (Kalman smoother of a daily cycle plus local level and AR(1)) or linear.';
