from tests.integration.storage.databases import db_url, pg_url, sqlite_template

__all__ = ["db_url", "pg_url", "sqlite_template"]
