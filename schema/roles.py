"""The least-privileged PostgreSQL roles smsledger's processes act as.

``smsledger migrate`` connects as the owner in ``DATABASE_URL``; everything else connects as the
same user but takes one of these roles *in the connection's startup packet* (asyncpg's
``server_settings``, libpq's ``options=-c role=...``): the role is then the session's default,
so ``RESET ROLE`` and ``RESET ALL`` come back to it rather than to the owner, and a pooled
connection never runs a statement with the owner's rights (migration 0015 creates the roles).

What this does not do: code running inside the process with the owner's URL could open a
connection of its own. Separate LOGIN users with their own passwords close that too; set
DATABASE_URL to a user that is a member of the roles and owns nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

INGEST_ROLE = "smsledger_app"      # SELECT, INSERT on events
WORKER_ROLE = "smsledger_worker"   # SELECT, INSERT on events; owns schema smsledger_lake
READER_ROLE = "smsledger_reader"   # SELECT on the worker's tables in smsledger_lake only
LAKE_SCHEMA = "smsledger_lake"     # the DuckLake catalog's tables (owned by WORKER_ROLE)


class RoleMissing(RuntimeError):
    """The database has no such role yet (not migrated), or the user may not take it."""


def server_settings(role: str) -> dict[str, str]:
    """asyncpg ``server_settings`` that make ``role`` the session's role from the start."""
    return {"role": role}


def libpq_options(role: str) -> str:
    """The same for a libpq connection (e.g. DuckDB's postgres or DuckLake attach):
    ``options='-c role=smsledger_worker'``."""
    return f"-c role={role}"


def libpq_url(url: str, role: str) -> str:
    """``url`` (postgresql://...) with ``options=-c role=<role>`` added to its query, for libpq
    clients such as ``ATTACH 'ducklake:postgres:<url>'`` (checked with DuckLake 1.5: the
    worker's catalog tables are then owned by smsledger_worker, and a reader attached as
    smsledger_reader cannot commit a write)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", libpq_options(role)))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def explain(role: str, exc: BaseException) -> RoleMissing:
    return RoleMissing(
        f"cannot act as the PostgreSQL role {role} ({exc}); run `smsledger migrate` as the "
        "database owner first (migration 0015 creates the roles), and connect as the owner or "
        "a member of the role")


ROLE_ERRORS = (asyncpg.InvalidAuthorizationSpecificationError,
               asyncpg.InsufficientPrivilegeError, asyncpg.InvalidParameterValueError,
               asyncpg.UndefinedObjectError)


async def connect_as(url: str, role: str, **kwargs: Any) -> asyncpg.Connection:
    """A connection to ``url`` acting as ``role`` for its whole life."""
    try:
        return await asyncpg.connect(url, server_settings=server_settings(role), **kwargs)
    except ROLE_ERRORS as exc:
        raise explain(role, exc) from None
