-- The read-only login (fitpipe_readonly, anyone who can send SQL through a Grafana data source)
-- could still write to disk: PostgreSQL lets every role create large objects (lo_from_bytea,
-- lo_put, ...) and temporary tables. Here only the role that runs the migrations and the
-- database owner keep those rights, in this database (pg_proc is per database). Revoking the
-- large-object functions needs a superuser, revoking TEMPORARY the database owner or a
-- superuser; without them this migration changes nothing it may not and says so. Reader logins
-- also get a connection limit and a statement timeout (fitpipe create-reader).
DO $$
DECLARE
    f regprocedure;
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
    superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF superuser OR owner = current_user THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I, %I', current_database(), current_user, owner);
    ELSE
        RAISE NOTICE 'temporary tables left allowed for every role: % neither owns the database nor is a superuser',
            current_user;
    END IF;
    IF NOT superuser THEN
        RAISE NOTICE 'large-object functions left callable by every role: % is not a superuser', current_user;
        RETURN;
    END IF;
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace
               AND p.proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_put', 'lowrite',
                                 'lo_truncate', 'lo_truncate64', 'lo_unlink')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', f, current_user, owner);
    END LOOP;
END $$;
