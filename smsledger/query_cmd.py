"""`smsledger query`: the shell around ``analytics.query`` (errors as exit 2, no traceback)."""

from __future__ import annotations

import sys

import click
import duckdb

from analytics.query import QueryRefused, check, run
from analytics.snapshot import CatalogUnreachable, SnapshotMissing, open_snapshot
from schema.settings import Settings


class QueryFailed(click.ClickException):
    """Refused, no model yet, catalog unreachable or a failing query: exit 2, one line."""

    exit_code = 2


def run_query(sql: str, fmt: str, settings: Settings) -> None:
    try:
        check(sql)     # refused before anything is opened, let alone executed
        con = open_snapshot(settings.data_dir, settings.database_url)
    except (QueryRefused, SnapshotMissing, CatalogUnreachable) as exc:
        raise QueryFailed(str(exc)) from None
    try:
        sys.stdout.write(run(con, sql, fmt))
    except QueryRefused as exc:
        raise QueryFailed(str(exc)) from None
    except duckdb.Error as exc:
        raise QueryFailed(str(exc).splitlines()[0]) from None
    finally:
        con.close()
