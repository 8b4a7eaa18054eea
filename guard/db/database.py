"""The one seam to PostgreSQL: a connection, named queries and streamed COPY, with errors mapped to ours."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.rows import scalar_row

from guard.config.redact import redact
from guard.errors import GuardError, UnreachableError

Query = str | sql.SQL | sql.Composed
Row = tuple[Any, ...]


@functools.cache  # a handful of files, read hundreds of times a second by a worker
def load_query(name: str) -> str:
    """Return the text of guard/db/sql/<name>.sql."""
    return resources.files("guard.db.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


def describe_target(url: str) -> str:
    """Name a database for messages without its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the database"
    host = info.get("host") or "localhost"
    return f"database '{info.get('dbname', '?')}' on {host}:{info.get('port') or 5432}"


def connect_failure(exc: psycopg.Error) -> str:
    """Return why libpq could not connect ("Connection refused"), not its hint or the host it names again.

    libpq writes `connection to server at "h", port p failed: <why>` then a tab-indented hint, once per
    address tried; the first attempt's reason says what happened.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line[:1].isspace()]
    if not lines:
        return "no answer"
    _, found, why = lines[0].rpartition(" failed: ")
    return redact(why.strip() if found and why.strip() else lines[0].removeprefix("connection failed: "))


class Pending:
    """A statement already sent whose rows are read later: in a pipeline, what is sent before a read
    shares that read's round trip."""

    def __init__(self, db: Database, cursor: psycopg.Cursor[Any]) -> None:
        self._db, self._cursor = db, cursor

    def all(self) -> list[Row]:
        with self._db._mapped_errors(), self._cursor as cur:
            return cur.fetchall()

    def one(self) -> Row | None:
        with self._db._mapped_errors(), self._cursor as cur:
            return cur.fetchone()


class Database:
    """A lazily opened connection with a narrow query interface (autocommit unless in transaction())."""

    def __init__(self, url: str, *, application_name: str = "incident-guard") -> None:
        self.url = url
        self.application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    @property
    def is_open(self) -> bool:
        """Tell whether a connection is open now, without opening one."""
        return self._conn is not None and not self._conn.closed

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                application_name=self.application_name,
                connect_timeout=10,
            )
        except psycopg.ProgrammingError as exc:
            raise GuardError(f"DATABASE_URL is not a valid connection string: {redact(str(exc))}") from None
        except psycopg.OperationalError as exc:
            raise UnreachableError(
                f"cannot reach {describe_target(self.url)}: {connect_failure(exc)}"
            ) from None

    def cancel(self) -> None:
        """Ask the server to stop this connection's running statement; from any thread, harmless when
        none runs (the statement raises QueryCanceled in the thread that waits on it)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            # the connection went meanwhile: its statement is over either way
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=5)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            if self._conn is not None and self._conn.closed:
                raise UnreachableError(
                    f"lost the connection to {describe_target(self.url)}: {redact(str(exc).strip())}"
                ) from None
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._mapped_errors(), self.connection.transaction():
            yield

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Send statements in psycopg's pipeline mode: none waits for its answer until one's rows are
        read, so a chain of small statements costs a round trip per read, not one per statement.
        Inside, execute() does not know its row count.

        Without BEGIN and COMMIT, PostgreSQL runs what is sent between two reads as one transaction:
        send them as statements (psycopg's transaction() waits for each on its own). On any error
        the connection is closed, which rolls back whatever transaction is open on the server.
        """
        conn = self.connection
        try:
            with self._mapped_errors(), conn.pipeline():
                yield
        except BaseException:
            self.close()
            raise

    @contextmanager
    def pipelined_transaction(self) -> Iterator[None]:
        """Run one transaction in pipeline mode (see pipeline()): a round trip per read, one to commit."""
        with self.pipeline():
            self.execute("BEGIN")
            yield
            self.execute("COMMIT")  # its answer is read as the pipeline ends, which raises a failure

    def submit(self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None) -> Pending:
        """Send a statement now and read its rows later (outside a pipeline it has run by the return)."""
        cur = self.connection.cursor()
        try:
            with self._mapped_errors():
                cur.execute(query, params)
        except BaseException:
            cur.close()
            raise
        return Pending(self, cur)

    def execute(self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
        with self._mapped_errors(), self.connection.cursor() as cur:
            cur.execute(query, params)
            return cur.rowcount

    def fetch_all(self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None) -> list[Row]:
        with self._mapped_errors(), self.connection.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def fetch_one(self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None) -> Row | None:
        with self._mapped_errors(), self.connection.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def stream(
        self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None, size: int = 5000
    ) -> Iterator[Row]:
        """Yield rows through a server-side cursor so memory stays flat."""
        for batch in self.stream_batches(query, params, size):
            yield from batch

    def stream_batches(
        self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None, size: int = 20000
    ) -> Iterator[list[Row]]:
        """Yield lists of rows from a server-side cursor: the fastest way to read millions of rows."""
        with (
            self._mapped_errors(),
            self.connection.transaction(),
            self.connection.cursor(name=f"guard_stream_{id(self)}") as cur,
        ):
            cur.execute(query, params)
            while batch := cur.fetchmany(size):
                yield batch

    def stream_column(
        self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None, size: int = 20000
    ) -> Iterator[Any]:
        """Yield a one-column query's values while the server is still sending them.

        Unlike a server-side cursor's FETCH round trips, the server never waits for us, so reading a
        million values costs little more than the scan (psycopg reads `size` rows at a time with libpq >= 17).
        """
        with self._mapped_errors(), self.connection.cursor(row_factory=scalar_row) as cur:
            yield from cur.stream(query, params, size=size)

    def stream_rows(
        self, query: Query, params: Sequence[Any] | dict[str, Any] | None = None, size: int = 5000
    ) -> Iterator[Row]:
        """Yield rows while the server is still sending them, the query run in one go.

        Memory stays flat as with stream(), but PostgreSQL never gives a server-side cursor's query
        parallel workers: a statement run to completion may have them.
        """
        with self._mapped_errors(), self.connection.cursor() as cur:
            yield from cur.stream(query, params, size=size)

    def ping(self) -> tuple[str, float]:
        """Return the server version and the best of three warm round trips, in seconds."""
        row = self.fetch_one("SELECT current_setting('server_version')")
        trips = []
        for _ in range(3):
            started = time.perf_counter()
            self.fetch_one("SELECT 1")
            trips.append(time.perf_counter() - started)
        return (str(row[0]) if row else "?"), min(trips)
