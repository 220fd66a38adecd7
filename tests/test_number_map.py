"""The rollup's compact map of numbers (analytics/number_map.py) against a plain dict."""

from __future__ import annotations

import random

import duckdb
import pytest

from analytics import number_map
from analytics.number_map import Dims, NumberMap

DIMS: list[Dims] = [("US", "Verizon", "hint", "mobile"), ("GB", None, None, None),
                    ("FR", "Orange", "lookup", "landline"), (None, None, None, None),
                    # Lookup's carrier is outside text: any character, an empty string.
                    ("US", "AT&T\x1fMobility", "lookup", "mobile"), ("US", "", "lookup", None)]
ODD = ["12345", "ACME", "+0123", "+1234567890123456", "", "+44 20 7946 0000", "+"]


def _phones(rng: random.Random, n: int) -> list[str]:
    return [f"+{rng.randint(10, 10**15 - 1)}" for _ in range(n)] + ODD


def _loaded(rows: list[tuple[str, Dims]]) -> NumberMap:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (phone VARCHAR, country VARCHAR, carrier VARCHAR, "
                "carrier_source VARCHAR, line_type VARCHAR)")
    if rows:
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [(p, *d) for p, d in rows])
    return NumberMap.load(con.execute("SELECT * FROM t"))


@pytest.mark.parametrize("combined", [True, False], ids=["codes combined", "row by row"])
def test_a_loaded_map_answers_as_the_dict_it_was_loaded_from(
        combined: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not combined:    # the path for more distinct values than an int64 combines
        monkeypatch.setattr(number_map, "COMBINE_LIMIT", 0)
    rng = random.Random(1)
    phones = _phones(rng, 3000)
    oracle = {p: rng.choice(DIMS) for p in phones}
    known = _loaded(list(oracle.items()))
    asked = phones + [f"+{rng.randint(10, 10**15 - 1)}" for _ in range(500)] + ["x", "+9"]
    assert known.get_many(asked) == [oracle.get(p) for p in asked]
    assert dict(known.items()) == oracle
    assert len(known) == len(oracle)
    assert known.missing(asked) == [p for p in asked if p not in oracle]


def test_updates_across_merges_answer_as_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(number_map, "MERGE_AT", 97)
    rng = random.Random(2)
    phones = _phones(rng, 2000)
    oracle = {p: rng.choice(DIMS) for p in phones[:500]}
    known = _loaded(list(oracle.items()))
    for _ in range(40):
        # New numbers and numbers known already (a Lookup answer changes their carrier).
        step = {rng.choice(phones): rng.choice(DIMS) for _ in range(60)}
        known.update(step)
        oracle.update(step)
        sample = rng.sample(phones, 300)
        assert known.get_many(sample) == [oracle.get(p) for p in sample]
    assert dict(known.items()) == oracle
    assert len(known) == len(oracle)
    assert all(p in known for p in oracle)
    assert "+19999999999999" not in known or "+19999999999999" in oracle


def test_an_empty_map_knows_nothing() -> None:
    known = _loaded([])
    assert known.get_many(["+15550001111", "ACME"]) == [None, None]
    assert known.get("+15550001111", ("X", None, None, None)) == ("X", None, None, None)
    known.update({"+15550001111": DIMS[0]})
    assert known.get("+15550001111") == DIMS[0]


def test_the_map_shares_one_tuple_per_distinct_dims() -> None:
    rng = random.Random(3)
    rows = [(p, tuple(rng.choice(DIMS))) for p in _phones(rng, 1000)]
    known = _loaded(rows)   # type: ignore[arg-type]
    assert len({id(d) for _, d in known.items()}) <= len(DIMS)
