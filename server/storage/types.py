"""Column types shared by the tables: timestamps that are always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Row
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# INTEGER PRIMARY KEY is SQLite's rowid alias; PostgreSQL gets a 64-bit identity.
IdColumnType = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime in, the same out, on SQLite and PostgreSQL alike.

    SQLite has no timezone type: values are stored as naive UTC text of fixed width, which also
    keeps their text order equal to their time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware datetimes, got {value!r}")
        utc: datetime = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# A result row of any shape (SQLAlchemy 2.1 types rows by their column tuple).
AnyRow = Row[*tuple[Any, ...]]
