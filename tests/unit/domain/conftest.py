from tests.integration.storage.databases import db, db_url, pg_url, sqlite_template

__all__ = ["db", "db_url", "pg_url", "sqlite_template"]
