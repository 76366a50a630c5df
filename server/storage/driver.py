"""Core statements run on the driver's own API, for the hottest paths of units of work.

SQLAlchemy's execution of one small statement costs five to eight times what SQLite takes to
run it (a ticket comment's three statements: about 30 us in sqlite3, 150-240 us through
Connection.execute; PERFORMANCE.md, "Where storage time goes"). A DriverStatement keeps the
statement as Core, compiles it once per dialect and set of value names, and on SQLite binds the
values with the types' own processors (UtcDateTime's included), runs the SQL on the sqlite3
cursor of the unit's connection (inside its transaction: BEGIN IMMEDIATE was issued when the
unit began) and converts what it returns the same way. On PostgreSQL it is an ordinary
Connection.execute: there the round trip, not Python, is the cost, and asyncpg's transaction
starts with SQLAlchemy's first statement, which must not be bypassed.

Statements run this way still count in Database.counters (through the STATEMENT_COUNTER the
database keeps in the connection's info: SQLAlchemy's event dispatch cost more than SQLite's
execution of a small statement); driver
errors reach the unit as the driver raised them (sqlite3.Error), and roll the unit back.

On PostgreSQL a statement can also be a transaction by itself (Database.write_alone): compiled
once for asyncpg and sent alone, in one round trip, with no BEGIN and COMMIT of its own. That
is for a change written as one statement (data-modifying CTEs), atomic on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Processor = Callable[[Any], Any] | None
# connection.info key: a callable the database counts a statement with.
STATEMENT_COUNTER = "sonde_count_statement"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the positional parameters, in order
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]
    defaults: Mapping[str, Any]  # the statement's own values (literals in its WHERE, ...)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's positional parameters, converted by the columns' types."""
        merged = {**self.defaults, **values}
        return tuple(
            merged[name] if process is None else process(merged[name])
            for name, process in zip(self.names, self.binds, strict=True)
        )

    def converted(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row the driver returned, in the columns' Python types."""
        return tuple(
            value if process is None else process(value)
            for value, process in zip(row, self.results, strict=True)
        )


Statement = UpdateBase | Select[Any]


class DriverStatement:
    """An INSERT/UPDATE/DELETE (with RETURNING or not), or a SELECT of data-modifying CTEs (on
    PostgreSQL), run on the driver's cursor on SQLite."""

    def __init__(self, statement: Statement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled] = {}

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with `values`; the rows it returns (RETURNING), converted to Python."""
        dialect = connection.dialect
        if dialect.name != "sqlite":
            result = connection.execute(self._statement, dict(values))
            return [tuple(row) for row in result] if result.returns_rows else []
        compiled = self._compiled_for(dialect, values)
        parameters = compiled.parameters(values)
        count = connection.info.get(STATEMENT_COUNTER)
        if count is not None:
            count()
        driver = connection.connection.driver_connection
        assert driver is not None  # a live connection, inside its unit's transaction
        cursor = driver.execute(compiled.sql, parameters)
        try:
            fetched = cursor.fetchall() if cursor.description is not None else []
        finally:
            cursor.close()
        return [compiled.converted(row) for row in fetched]

    def scalar(self, connection: Connection, values: Mapping[str, Any]) -> Any:
        """The first column of the one row it returns."""
        (row,) = self.rows(connection, values)
        return row[0]

    def compiled_for(self, dialect: Dialect, values: Mapping[str, Any]) -> _Compiled:
        """The SQL for `dialect` and this set of value names (compiled once), to send as the
        driver's own statement."""
        return self._compiled_for(dialect, values)

    def _compiled_for(self, dialect: Dialect, values: Mapping[str, Any]) -> _Compiled:
        key = (dialect.name, frozenset(values))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _compile(self._statement, dialect, sorted(values))
        return compiled


def _compile(statement: Statement, dialect: Dialect, keys: Sequence[str]) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    assert isinstance(compiled, SQLCompiler)
    if compiled.insert_prefetch or compiled.update_prefetch:
        # Python-side column defaults are computed by SQLAlchemy's execution, skipped here.
        raise ValueError(f"give every column a value: {statement} has defaults to compute")
    names = tuple(compiled.positiontup or ())
    binds = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.exported_columns
    )
    given = set(keys)
    defaults = {
        name: value
        for name, value in compiled.construct_params(dict.fromkeys(keys)).items()
        if name not in given
    }
    return _Compiled(compiled.string, names, binds, results, defaults)
