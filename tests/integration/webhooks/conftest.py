from tests.integration.console.harness import console
from tests.integration.storage.databases import db, db_url, pg_url, sqlite_template

__all__ = ["console", "db", "db_url", "pg_url", "sqlite_template"]
