"""The database: URL forms, engines, units of work, and migrations (Alembic).

A unit of work is a plain synchronous function of one SQLAlchemy Connection, run whole inside
one transaction as one hop (ARCHITECTURE.md, "Audit, permissions, transactions"):
- SQLite (the default, in the data folder): on a dedicated writer thread (writers take turns
  there, never in SQLite's busy handler) or a reader thread, with the stdlib driver. WAL mode,
  synchronous=FULL, so a snapshot the server acknowledged survives kill -9 and power loss; every
  write transaction starts with BEGIN IMMEDIATE.
- PostgreSQL, through asyncpg: the function runs in one greenlet on the event loop (checkout,
  BEGIN, the unit, COMMIT, checkin), so no thread is involved at all. A pooled connection is
  pinged only after PING_AFTER_IDLE_S unused, not before every unit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.util import await_only, greenlet_spawn

from sonde.server.storage.driver import STATEMENT_COUNTER, DriverStatement

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_READERS = 2
# A pooled PostgreSQL connection is pinged before use only after this long unused: a ping is
# three round trips (asyncpg: BEGIN, ";", ROLLBACK), as many as the rest of a small unit.
PING_AFTER_IDLE_S = 10.0
# sha256_hex(text) on SQLite, for SQL that computes a hash where PostgreSQL has sha256().
SQLITE_SHA256_HEX = "sonde_sha256_hex"
# hmac_hex(key, text) on SQLite: HMAC-SHA256, for the keyed audit chain.
SQLITE_HMAC_HEX = "sonde_hmac_hex"
_READ_ONLY = "sonde_read_only"

T = TypeVar("T")
Unit = Callable[[Connection], T]


class SchemaNotCurrent(RuntimeError):
    """The database was not migrated to the schema this server needs."""


def database_url(data_dir: Path, url: str | None = None) -> str:
    """The async SQLAlchemy URL to use: SQLite in `data_dir` unless a URL is given."""
    if url is None or not url.strip():
        return f"sqlite+aiosqlite:///{(data_dir / 'sonde.db').resolve()}"
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            "not a database URL (it has no scheme://): expected postgresql://USER@HOST/DB, "
            "or leave --db out for SQLite in the data folder"
        )
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        normalised = f"postgresql+asyncpg://{rest}"
    elif scheme in ("sqlite", "sqlite+aiosqlite"):
        normalised = f"sqlite+aiosqlite://{rest}"
    else:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use postgresql://USER@HOST/DB "
            "(or postgres://, postgresql+asyncpg://), or leave --db out for SQLite "
            "in the data folder"
        )
    try:
        parsed = make_url(normalised)
    except ArgumentError as error:
        raise ValueError(f"{_redact(url)!r} is not a valid database URL: {error}") from None
    if parsed.get_backend_name() == "sqlite" and not parsed.database:
        raise ValueError("a SQLite URL needs a file path: sqlite:////absolute/path/sonde.db")
    return normalised


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _create_owner_only(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (its WAL and SHM files copy the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)


def create_engine(url: str) -> AsyncEngine:
    """An async engine with Sonde's durability and locking settings applied."""
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None:
        _create_owner_only(sqlite_path)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_async_engine(url)
        _ping_when_idle(engine.sync_engine)
        return engine
    engine = create_async_engine(url)
    _apply_sqlite_settings(engine.sync_engine)
    return engine


def create_sqlite_engine(url: str) -> Engine:
    """The stdlib-driver engine the SQLite worker threads use, with the same settings."""
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None:
        _create_owner_only(sqlite_path)
    engine = create_sync_engine(
        make_url(url).set(drivername="sqlite"),
        connect_args={"check_same_thread": False},
        pool_size=SQLITE_READERS + 1,
    )
    _apply_sqlite_settings(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for a connection that sat unused for PING_AFTER_IDLE_S: one the
    server or the network may have dropped. A dead one is replaced before the unit runs."""
    idle_since = "sonde_idle_since"

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[idle_since] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(idle_since)
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise DisconnectionError("the pooled connection is gone") from error


def _apply_sqlite_settings(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (see _on_begin); the driver's own BEGIN is DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(pragma)
        cursor.close()
        dbapi_connection.create_function(SQLITE_SHA256_HEX, 1, _sha256_hex, deterministic=True)
        dbapi_connection.create_function(SQLITE_HMAC_HEX, 2, _hmac_hex, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        # On the driver's cursor: transaction control, like asyncpg's BEGIN, is not one of the
        # unit's statements (nor worth a statement execution of its own).
        cursor = connection.connection.cursor()
        try:
            cursor.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
        finally:
            cursor.close()


def _sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def _hmac_hex(key: bytes | None, value: str | None) -> str | None:
    if key is None or value is None:
        return None
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


@dataclass
class StorageCounters:
    """What the database did, for benchmarks: statements, transactions, thread hops."""

    statements: int = 0
    transactions: int = 0
    thread_hops: int = 0

    def copy(self) -> StorageCounters:
        return StorageCounters(self.statements, self.transactions, self.thread_hops)

    def __sub__(self, other: StorageCounters) -> StorageCounters:
        return StorageCounters(
            self.statements - other.statements,
            self.transactions - other.transactions,
            self.thread_hops - other.thread_hops,
        )


class Database:
    """One engine and its sessions; every domain class takes one of these."""

    def __init__(self, engine: AsyncEngine, sqlite_engine: Engine | None = None) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.counters = StorageCounters()
        self._sqlite = sqlite_engine
        self._sqlite_reading = (
            sqlite_engine.execution_options(**{_READ_ONLY: True}) if sqlite_engine else None
        )
        # One writer thread: SQLite writers take turns there. Readers run beside it (WAL).
        self._writer = ThreadPoolExecutor(1, "sonde-db-write") if sqlite_engine else None
        self._readers = (
            ThreadPoolExecutor(SQLITE_READERS, "sonde-db-read") if sqlite_engine else None
        )
        count = self._count_statement
        self._writing = _ThreadConnections(sqlite_engine, count) if sqlite_engine else None
        self._reading = (
            _ThreadConnections(self._sqlite_reading, count) if self._sqlite_reading else None
        )
        for counted in (engine.sync_engine, sqlite_engine):
            if counted is not None:
                event.listen(counted, "before_cursor_execute", self._count_statement)

    def _count_statement(self, *_args: Any) -> None:
        self.counters.statements += 1

    @classmethod
    async def open(cls, url: str) -> Database:
        """Open a migrated database; SchemaNotCurrent says what to run when it is not."""
        sqlite = create_sqlite_engine(url) if make_url(url).get_backend_name() == "sqlite" else None
        database = cls(create_engine(url), sqlite)
        try:
            await database._check_schema()
        except BaseException:
            await database.close()
            raise
        return database

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in one write transaction: committed when it returns, rolled back if it
        raises. It must not block on anything but the database (it may run on a thread)."""
        self.counters.transactions += 1
        if self._writing is not None and self._writer is not None:
            self.counters.thread_hops += 1
            return await asyncio.get_running_loop().run_in_executor(
                self._writer, self._writing.run, unit
            )
        # One greenlet for checkout, BEGIN, the unit, COMMIT and checkin (AsyncEngine.begin()
        # plus run_sync would spawn five): the asyncpg calls inside still run on this loop.
        return await greenlet_spawn(_run_unit, self.engine.sync_engine, unit)

    async def write_alone(
        self, statement: DriverStatement, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run one statement as a transaction by itself; the rows it returns.

        PostgreSQL: sent alone through asyncpg, autocommit, so the statement is the whole
        transaction (atomic: all of its changes or none) and costs one round trip, where a unit
        of work costs two more (BEGIN, COMMIT). SQLite: a write unit of that one statement.
        """
        if self._writing is not None:
            return await self.write(lambda connection: statement.rows(connection, values))
        self.counters.transactions += 1
        self.counters.statements += 1
        compiled = statement.compiled_for(self.engine.dialect, values)
        parameters = compiled.parameters(values)
        rows = await greenlet_spawn(_run_alone, self.engine.sync_engine, compiled.sql, parameters)
        return [compiled.converted(row) for row in rows]

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit` in one read-only transaction (on SQLite beside the writer, not behind)."""
        self.counters.transactions += 1
        if self._reading is not None and self._readers is not None:
            self.counters.thread_hops += 1
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, self._reading.run, unit
            )
        return await greenlet_spawn(_run_read, self.engine.sync_engine, unit)

    async def close(self) -> None:
        for pool in (self._writer, self._readers):
            if pool is not None:
                pool.shutdown(wait=True)
        for kept in (self._writing, self._reading):
            if kept is not None:
                kept.close()
        if self._sqlite is not None:
            self._sqlite.dispose()
        await self.engine.dispose()

    async def _check_schema(self) -> None:
        head = ScriptDirectory.from_config(_alembic_config("")).get_current_head()

        def current(connection: Connection) -> str | None:
            try:
                found = connection.execute(text("SELECT version_num FROM alembic_version"))
                return None if (value := found.scalar()) is None else str(value)
            except Exception:
                return None

        at = await self.read(current)
        if at != head:
            raise SchemaNotCurrent(
                f"the database is at schema {at or 'none'}, this server needs {head}: "
                "run `sonde-server init` (new data folder) or let `sonde-server run` migrate it"
            )


def _run_alone(engine: Engine, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
    """One statement on a pooled asyncpg connection, outside any transaction block."""
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert driver is not None
        try:
            rows: list[Any] = await_only(driver.fetch(sql, *parameters))
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            pooled.invalidate()  # the connection is gone: the pool opens a new one next time
            raise
        return rows
    finally:
        pooled.close()


def _run_unit(engine: Engine, unit: Unit[T]) -> T:
    with engine.begin() as connection:
        return unit(connection)


class _ThreadConnections:
    """Each SQLite worker thread keeps one connection for its life: a pool checkout, a new
    Connection and the pool's reset on return cost a fifth of a small unit (measured)."""

    def __init__(self, engine: Engine, count_statement: Callable[..., None]) -> None:
        self._engine = engine
        self._count_statement = count_statement
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Connection] = []

    def run(self, unit: Unit[T]) -> T:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._engine.connect()
            connection.info[STATEMENT_COUNTER] = self._count_statement  # DriverStatement's
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        with connection.begin():
            return unit(connection)

    def close(self) -> None:
        """Once the threads are done (check_same_thread is off: closing from here is safe)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()


def _run_read(engine: Engine, unit: Unit[T]) -> T:
    # As AsyncEngine.connect() did: the driver's transaction ends with the connection (rollback).
    with engine.connect() as connection:
        return unit(connection)


def _alembic_config(url: str) -> Config:
    # Built in code: the wheel ships migrations/ but no alembic.ini.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sonde_url"] = url
    return config


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema (synchronous; safe to repeat)."""
    config = _alembic_config(url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, "head")
        return
    # Called from inside an event loop: Alembic's env.py runs its own loop, so use a thread.
    failure: list[BaseException] = []

    def upgrade() -> None:
        try:
            command.upgrade(config, "head")
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=upgrade, name="sonde-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
