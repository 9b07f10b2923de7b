-- fitpipe coordinates its runs with advisory locks (fitpipe/locks.py). PostgreSQL lets every
-- role call the advisory-lock functions, so a read-only login (anyone who can send SQL through a
-- Grafana data source) could take a participant's lock and stall ingestion. Here only the role
-- that runs the migrations and the database owner keep them, in this database (pg_proc is
-- per database; other databases of the server are untouched). Revoking needs a superuser; without
-- one this migration changes nothing and says so, and fitpipe's lock_timeout still turns a stuck
-- lock into a failed day instead of a hang. Another role that runs fitpipe needs
-- `GRANT EXECUTE ON FUNCTION pg_catalog.pg_advisory_xact_lock(bigint) ... TO that_role` (see README).
DO $$
DECLARE
    f regprocedure;
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'advisory-lock functions left callable by every role: % is not a superuser', current_user;
        RETURN;
    END IF;
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname LIKE 'pg\_%advisory%'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, current_user);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, owner);
    END LOOP;
END $$;
