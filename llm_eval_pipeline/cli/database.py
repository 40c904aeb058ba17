"""The production deployment's PostgreSQL server: the URLs Dagster and MLflow get from
``database_url``, and the checks ``llm-eval serve`` makes before it starts them.

Both are given psycopg2 explicitly (``postgresql+psycopg2://``): SQLAlchemy 2.1 reads a
bare ``postgresql://`` as psycopg 3, whose server-side parameters dagster-postgres's
``NOTIFY run_events, %(id)s`` does not survive (seen here: every schedule tick failed).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.settings import redacted_url

CONNECT_TIMEOUT_S = 5
DRIVER = "postgresql+psycopg2"
DAGSTER_URL_ENV = "LLM_EVAL_DAGSTER_POSTGRES_URL"
"""The variable Dagster's ``dagster.yaml`` reads its PostgreSQL URL from (set from
``database_url`` by the CLI; the file itself holds no password)."""


class DatabaseError(UserError, RuntimeError):
    """The deployment's PostgreSQL server cannot be used; the message names it."""


def _with(url: str, scheme: str, path: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=scheme, path=path if path is not None else parts.path))


def dagster_database_url(database_url: str) -> str:
    """Dagster's instance storage: the database of ``database_url``, through psycopg2."""
    return _with(database_url, DRIVER)


def mlflow_database_url(database_url: str) -> str:
    """The MLflow tracking store: the same server, the database name + ``_mlflow``."""
    name = urlsplit(database_url).path.lstrip("/") or "postgres"
    return _with(database_url, DRIVER, f"/{name}_mlflow")


def _connect(url: str):
    import psycopg2

    try:
        return psycopg2.connect(_with(url, "postgresql"), connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {redacted_url(url)}: {str(exc).strip()}"
        ) from exc


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when the server does not have it yet."""
    import psycopg2
    from psycopg2 import sql

    name = urlsplit(url).path.lstrip("/")
    server = _with(url, "postgresql", "/postgres")
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
