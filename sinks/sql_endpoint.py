"""Read-only SQL over HTTP, served by the process that holds the embedded ClickHouse.

Only one process may open a chDB path, so while ``driftline sink`` runs, ``driftline sql`` (and tests) read
through it: ``POST /query`` with the SQL as the body on ``127.0.0.1:<sink.sql_port>`` answers with the result as
pandas' ``split`` JSON (``columns``, ``data``), or ``400`` with the error. Every query runs with ClickHouse's
``readonly=1`` setting, so nothing can be changed through it. :func:`query` picks the way in: the endpoint
when it answers, else the database itself.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.schemas.errors import StorageError
from driftline.settings import Settings
from driftline.sinks.clickhouse import open_existing

READONLY = {"readonly": 1}
MAX_QUERY_BYTES = 1_000_000


class SQLEndpoint:
    """Serve read-only queries on ``client`` from a daemon thread until :meth:`close`."""

    def __init__(self, client: Client, port: int, host: str = "127.0.0.1") -> None:
        self.client = client

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != "/query" or not 0 < length <= MAX_QUERY_BYTES:
                    self._answer(HTTPStatus.BAD_REQUEST, b"POST /query with the SQL as the body")
                    return
                sql = self.rfile.read(length).decode("utf-8", "replace")
                try:
                    frame = read_only(client, sql)
                except ClickHouseError as error:
                    self._answer(HTTPStatus.BAD_REQUEST, str(error).splitlines()[0].encode())
                    return
                self._answer(HTTPStatus.OK, frame.to_json(orient="split", index=False, date_format="iso").encode())

            def _answer(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per query on stderr would drown the sink's own log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise StorageError(
                f"cannot serve SQL on {host}:{port} ({error.strerror}); set DRIFTLINE_SINK_SQL_PORT to a free port"
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="driftline-sql", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def query(settings: Settings, sql: str) -> pd.DataFrame:
    """Run ``sql`` read-only: through the endpoint of a running sink if one answers, else on the database."""
    try:
        return query_endpoint(settings.sink.sql_port, sql)
    except urllib.error.URLError as error:
        if isinstance(error, urllib.error.HTTPError):
            raise StorageError(f"query failed: {error.read().decode('utf-8', 'replace')}") from None
    client = open_existing(settings)  # a read never creates a database
    try:
        return read_only(client, sql)
    except ClickHouseError as error:
        raise StorageError(f"query failed: {str(error).splitlines()[0]}") from None
    finally:
        client.close()


def read_only(client: Client, sql: str) -> pd.DataFrame:
    """The answer to ``sql``, read-only, with its columns also when it has no rows."""
    result = client.query(sql, settings=READONLY)
    columns = list(result.column_names)
    if not columns:  # embedded ClickHouse names no columns for an empty answer: ask for them
        with contextlib.suppress(ClickHouseError):  # (not a SELECT: then there are none)
            columns = [str(row[0]) for row in client.query(f"DESCRIBE ({sql})", settings=READONLY).result_rows]
    return pd.DataFrame(result.result_rows, columns=columns)


def query_endpoint(port: int, sql: str) -> pd.DataFrame:
    """Run ``sql`` through the endpoint on ``127.0.0.1:port``; raises ``URLError`` when none answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        result = json.loads(response.read())
    return pd.DataFrame(result["data"], columns=result["columns"])
