"""`smsledger query`: the shell around ``analytics.query`` (errors as exit 2, no traceback)."""

from __future__ import annotations

import sys

import duckdb

from analytics.query import QueryRefused, check, run
from analytics.snapshot import CatalogUnreachable, SnapshotMissing, open_snapshot
from schema.settings import Settings


def run_query(sql: str, fmt: str, settings: Settings) -> int:
    try:
        check(sql)     # refused before anything is opened, let alone executed
        con = open_snapshot(settings.data_dir, settings.database_url)
    except (QueryRefused, SnapshotMissing, CatalogUnreachable) as exc:
        print(f"smsledger query: error: {exc}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(run(con, sql, fmt))
    except QueryRefused as exc:
        print(f"smsledger query: error: {exc}", file=sys.stderr)
        return 2
    except duckdb.Error as exc:
        print(f"smsledger query: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        con.close()
    return 0
