"""The production deployment's PostgreSQL server: the checks ``llm-eval serve`` and
``llm-eval run`` make before they use it, and the one message a lost connection gives.
The URLs Dagster and MLflow get from ``database_url`` are derived in ``settings``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.settings import redacted_url, with_scheme

CONNECT_TIMEOUT_S = 5
DAGSTER_URL_ENV = "LLM_EVAL_DAGSTER_POSTGRES_URL"
"""The variable Dagster's ``dagster.yaml`` reads its PostgreSQL URL from (set from
``database_url`` by the CLI; the file itself holds no password)."""


class DatabaseError(UserError, RuntimeError):
    """The deployment's PostgreSQL server cannot be used; the message names it."""


def _connect(url: str):
    import psycopg2

    try:
        return psycopg2.connect(with_scheme(url, "postgresql"), connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {redacted_url(url)}: {str(exc).strip()}"
        ) from exc


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when the server does not have it yet."""
    import psycopg2
    from psycopg2 import sql

    name = urlsplit(url).path.lstrip("/")
    server = with_scheme(url, "postgresql", "/postgres")
    connection = _connect(server)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                try:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg2.Error as exc:
                    raise DatabaseError(
                        f"cannot create database {name!r} on {redacted_url(server)}: "
                        f"{str(exc).strip()} (create it, or grant CREATEDB)"
                    ) from exc
    finally:
        connection.close()


def check_database(url: str) -> None:
    """Connect to ``url`` once, so that a wrong URL fails here, naming the database."""
    _connect(url).close()


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a lost or refused
    PostgreSQL connection (psycopg2's, or SQLAlchemy's around it)."""
    import psycopg2
    import sqlalchemy.exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
            return True
        if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def connection_lost(database_url: str, during: str, exc: BaseException) -> DatabaseError:
    """The one message for a PostgreSQL server that stopped answering in the middle of
    ``during``: which database, what was left undone, what to do."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseError(
        f"lost the PostgreSQL database {redacted_url(database_url)} during {during}: "
        f"{first_line}. Nothing of that run was committed past its last finished step; "
        "run the same command again once the server is back"
    )
