"""Open ClickHouse through clickhouse-connect and apply driftline's DDL.

One code path for both deployments: ``chdb:///absolute/path`` runs the embedded engine in this process
(only one process may hold a path), ``http(s)://host:8123`` talks to a server.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.schemas import ddl
from driftline.schemas.errors import StorageError
from driftline.settings import Settings

EMBEDDED_SCHEME = "chdb"


def is_embedded(dsn: str) -> bool:
    """True for the embedded chDB engine (``chdb:///path``)."""
    return urlsplit(dsn).scheme == EMBEDDED_SCHEME


def open_client(dsn: str, database: str, password: str | None = None, raw_ttl_days: int | None = None) -> Client:
    """Connect, create ``database`` and every table if missing, and return a client bound to it.

    Raises :class:`StorageError` with one clear sentence when the embedded path is held by another process
    or the server cannot be reached.
    """
    client = _connect(dsn, password)
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        existing: dict[str, set[str]] = {}
        answer = client.query(
            "SELECT table, name FROM system.columns WHERE database = {database:String}", {"database": database}
        )
        for table, column in answer.result_rows:
            existing.setdefault(table, set()).add(column)
        for statement in ddl.statements(database, raw_ttl_days, existing):
            client.command(statement)
        client.command(
            f"INSERT INTO {database}.schema_version (version) "
            f"SELECT {ddl.SCHEMA_VERSION} WHERE {ddl.SCHEMA_VERSION} NOT IN "
            f"(SELECT version FROM {database}.schema_version)"
        )
    except ClickHouseError as exc:
        client.close()
        raise StorageError(f"applying driftline's DDL to {database} at {redacted(dsn)} failed: {exc}") from exc
    client.database = database
    return client


def open_configured(settings: Settings) -> Client:
    """:func:`open_client` on the DSN, database, password and raw-event TTL of ``settings``."""
    return open_client(
        settings.clickhouse_dsn, settings.clickhouse.database, _password(settings), settings.clickhouse.raw_ttl_days
    )


def open_existing(settings: Settings) -> Client:
    """A client bound to the configured database, creating nothing (for reading): :class:`StorageError` naming
    the databases there when it does not exist."""
    dsn, database = settings.clickhouse_dsn, settings.clickhouse.database
    client = _connect(dsn, _password(settings))
    if str(client.command(f"EXISTS DATABASE `{database}`")) != "1":
        names = sorted(str(row[0]) for row in client.query("SHOW DATABASES").result_rows)
        client.close()
        raise StorageError(
            f"no database {database!r} at {redacted(dsn)}: nothing stored there yet (run `driftline sink` or "
            f"`driftline run`), or DRIFTLINE_CLICKHOUSE_DATABASE is misspelt; databases there: {names}"
        )
    client.database = database
    return client


def _password(settings: Settings) -> str | None:
    password = settings.clickhouse.password
    return password.get_secret_value() if password else None


def drop_database(client: Client, database: str) -> None:
    """Drop a database and everything in it (tests use one database per test)."""
    client.command(f"DROP DATABASE IF EXISTS {database}")


def _connect(dsn: str, password: str | None) -> Client:
    if is_embedded(dsn) and not urlsplit(dsn).path.startswith("/"):
        raise StorageError(f"embedded ClickHouse DSN {dsn!r} needs an absolute path: chdb:///absolute/path")
    try:
        if password is None:
            return clickhouse_connect.get_client(dsn=dsn)
        return clickhouse_connect.get_client(dsn=dsn, password=password)
    except ClickHouseError as exc:
        message = str(exc)
        if (
            "Cannot lock file" in message
            or "Another server instance" in message
            or ("EmbeddedServer" in message and is_embedded(dsn))
        ):
            raise StorageError(
                f"the embedded ClickHouse at {urlsplit(dsn).path} is held by another process (a running "
                "`driftline sink` or `driftline run`; only one process may open a chDB path): stop it, "
                "or query through it with `driftline sql`"
            ) from exc
        raise StorageError(f"cannot open ClickHouse at {redacted(dsn)}: {exc}") from exc


def redacted(dsn: str) -> str:
    """The DSN with its password replaced by ``****``, for messages, logs and ``config show``."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":****@")))
