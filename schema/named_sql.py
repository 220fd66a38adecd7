"""Named queries: a ``.sql`` file holds several, each under a ``-- name: <name>`` header
(procrastinate's convention), read once per process.

Every runtime query lives in such a file or in one file of its own (``schema/sql``); none is
assembled in Python. An optional filter is written in the SQL, ``($x IS NULL OR col = $x)``,
and its value bound like any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """``{name: query}`` from the text of a named-query file. The text before the first header
    (a comment on the file) belongs to no query; a name given twice is an error."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is named twice")
        queries[name] = body.strip().removesuffix(";").rstrip()
    return queries


@cache
def named(package: str, path: str) -> Mapping[str, str]:
    """The queries of ``<package>/<path>``, read once."""
    text = resources.files(package).joinpath(path).read_text(encoding="utf-8")
    return MappingProxyType(parse(text))


@cache
def script(package: str, path: str) -> str:
    """The whole text of ``<package>/<path>`` (DDL run as one script), read once."""
    return resources.files(package).joinpath(path).read_text(encoding="utf-8")
