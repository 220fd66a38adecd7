"""``smsledger query "SQL"``: read-only SQL on the model, the state the dashboard shows.

A statement is checked before it runs, with DuckDB's own parser: exactly one statement, of the
SELECT kind (SELECT, FROM ..., WITH ..., DESCRIBE, SUMMARIZE, EXPLAIN of those); no function
that reads files or other databases or that changes the lake, and no table named like a file.
Refused statements are never executed. Behind the check, the connection itself cannot write
(the lake is attached READ_ONLY, file access is switched off, the configuration is locked), so a
case the check missed still fails safely.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb


class QueryRefused(ValueError):
    """The statement is not a read-only query on the model; the message says why."""


_KINDS = {
    duckdb.StatementType.INSERT: "writes (INSERT)", duckdb.StatementType.UPDATE: "writes (UPDATE)",
    duckdb.StatementType.DELETE: "writes (DELETE)", duckdb.StatementType.CREATE: "writes (CREATE)",
    duckdb.StatementType.DROP: "writes (DROP)", duckdb.StatementType.ALTER: "writes (ALTER)",
    duckdb.StatementType.ATTACH: "ATTACH", duckdb.StatementType.DETACH: "DETACH",
    duckdb.StatementType.COPY: "COPY", duckdb.StatementType.EXPORT: "EXPORT",
    duckdb.StatementType.LOAD: "INSTALL/LOAD", duckdb.StatementType.SET: "SET/USE",
    duckdb.StatementType.CALL: "CALL/PRAGMA/CHECKPOINT",
}

# Functions that read files, reach other databases or the network, run SQL given as text, or
# act on the lake's files and snapshots.
_DENIED = re.compile(
    r"^(read_.*|.*_scan|.*_scan_.*|parquet_.*|glob|sniff_csv|query|query_table|getenv"
    r"|ducklake_.*|postgres_.*|pg_.*|sqlite_.*|mysql_.*|iceberg_.*|delta_.*|json_execute.*"
    r"|http.*|s3_.*|azure_.*|load_.*|install_.*|current_setting|duckdb_secrets"
    r"|duckdb_settings|which_secret|ducklake|checkpoint|force_checkpoint|enable_.*|disable_.*)$")


def _walk(node: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) of every function and base table in a serialized statement."""
    if isinstance(node, dict):
        if node.get("class") == "FUNCTION" and isinstance(node.get("function_name"), str):
            yield "function", node["function_name"]
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            yield "table", node["table_name"]
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check(sql: str) -> None:
    """Raise QueryRefused unless ``sql`` is one read-only query on the model."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"not valid SQL: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, not {len(statements)}")
    [statement] = statements
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = re.sub(r"^\s*explain\s+(analyze\s+)?", "", sql, flags=re.IGNORECASE)
        return check(inner)
    if kind != duckdb.StatementType.SELECT:
        what = _KINDS.get(kind, kind.name)
        raise QueryRefused(f"{what} is not allowed: `smsledger query` is read-only (SELECT)")
    body = sql.strip().rstrip(";")
    if re.match(r"^(describe|summarize|show)\b", body, re.IGNORECASE):
        rest = re.sub(r"^(describe|summarize|show)\s*", "", body, flags=re.IGNORECASE)
        if not rest or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rest):
            return            # DESCRIBE messages, SUMMARIZE numbers, SHOW TABLES
        return check(rest)
    with duckdb.connect(":memory:", config={"enable_external_access": False}) as parser:
        row = parser.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise QueryRefused(f"cannot check this statement: {tree.get('error_message', '')}")
    for what, name in _walk(tree["statements"]):
        lowered = name.lower()
        if what == "function" and _DENIED.match(lowered):
            raise QueryRefused(f"{name}() is not allowed: `smsledger query` reads the model "
                               "only (no files, other databases or lake maintenance)")
        if what == "table" and re.search(r"[./\\:]", name):
            raise QueryRefused(f"{name!r} looks like a file: `smsledger query` reads the "
                               "model's tables only")
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v) for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        return json.dumps([{c: _json_value(v) for c, v in zip(columns, row, strict=True)}
                           for row in rows], indent=1) + "\n"
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str = "table") -> str:
    """Check ``sql``, run it on the read-only connection ``con``, and render the result."""
    check(sql)
    result = con.execute(sql)
    columns = [d[0] for d in result.description or []]
    return render(columns, result.fetchall(), fmt)
