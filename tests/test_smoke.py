def test_init_db_is_idempotent(cli, db):
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    applied = db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert applied >= 2
