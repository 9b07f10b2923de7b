-- A read-only group role for dashboards and analysts (Grafana, psql). Logins are added to it
-- with `fitpipe create-reader NAME`. Roles belong to the whole server, so the role is created
-- only once; the grants are per database. Without the right to create roles this migration
-- only grants what it can, and says so.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fitpipe_readonly') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE fitpipe_readonly NOLOGIN;
            COMMENT ON ROLE fitpipe_readonly IS 'fitpipe: may read every fitpipe table and call fitpipe_adherence(), nothing else.';
        ELSE
            RAISE NOTICE 'fitpipe_readonly not created: % may not create roles', current_user;
            RETURN;
        END IF;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO fitpipe_readonly', current_database());
    GRANT USAGE ON SCHEMA public TO fitpipe_readonly;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO fitpipe_readonly;
    GRANT EXECUTE ON FUNCTION fitpipe_adherence(date, real, interval, integer, integer) TO fitpipe_readonly;
    -- Tables added by later migrations are readable too.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO fitpipe_readonly;
END $$;
