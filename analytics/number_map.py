"""What the rollup knows of every number, in about 12 bytes a number.

The rollup keeps, for each number it has described, what its messages and its row in
`numbers` carry of it (country, carrier, where the carrier came from, line type: ``Dims``), so
that a batch finds its new numbers and its messages' columns without scanning number_info. A
dict of millions of phone strings costs ~110 bytes a number (360 MB at 3.3 M numbers, most of
the writer's peak memory); here an E.164 number is its digits as an int64 in a sorted array,
beside a uint32 code of its Dims (a few distinct tuples for millions of numbers). What is not
E.164 (short codes, alphanumeric senders, malformed input) stays in a dict, and so do the
numbers described since the last merge, until there are MERGE_AT of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# country, carrier, carrier source ('lookup' or 'hint'), line type
Dims = tuple[str | None, str | None, str | None, str | None]
UNKNOWN: Dims = (None, None, None, None)

# An E.164 number whose digits are its key: "+" and 2 to 15 digits, the first not 0, so that
# "+" + str(key) gives the phone back.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")     # with fullmatch
_E164_ANCHORED = f"^{E164.pattern}$"         # the same for pyarrow's match_substring_regex

COMBINE_LIMIT = 2**63   # the four columns' codes combine in an int64 below this (load)
MERGE_AT = 50_000       # numbers described since the last merge before they join the arrays


class NumberMap:
    """phone -> Dims for every number described; see the module's doc."""

    def __init__(self) -> None:
        self._keys = np.empty(0, np.int64)      # sorted E.164 digits
        self._codes = np.empty(0, np.uint32)    # their Dims, as indexes into _dims
        self._dims: list[Dims] = []
        self._code_of: dict[Dims, int] = {}
        self._other: dict[str, Dims] = {}       # not E.164: never merged
        self._recent: dict[str, Dims] = {}      # E.164, described since the last merge

    @classmethod
    def load(cls, cursor: duckdb.DuckDBPyConnection) -> NumberMap:
        """From an executed query's rows (phone, country, carrier, carrier_source, line_type),
        read in record batches: vectorised, no Python object per number."""
        self = cls()
        keys: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        reader = cursor.to_arrow_reader(100_000)
        for batch in reader:
            rows = pa.Table.from_batches([batch])
            e164 = pc.fill_null(pc.match_substring_regex(rows.column(0), _E164_ANCHORED), False)
            other = rows.filter(pc.invert(e164))
            if other.num_rows:
                self._other.update(zip(other.column(0).to_pylist(),
                                       (self._dims[c] for c in self._codes_of(other).tolist()),
                                       strict=True))
            chosen = rows.filter(e164)
            if not chosen.num_rows:
                continue
            digits = pc.utf8_slice_codeunits(chosen.column(0), 1)
            keys.append(pc.cast(digits, pa.int64()).to_numpy())
            codes.append(self._codes_of(chosen))
        if keys:
            all_keys = np.concatenate(keys)
            order = np.argsort(all_keys, kind="stable")
            self._keys = all_keys[order]
            self._codes = np.concatenate(codes)[order]
            # One row a number (number_dims() has one), but keep the last of any repeat.
            last = np.append(self._keys[1:] != self._keys[:-1], True)
            if not last.all():
                self._keys, self._codes = self._keys[last], self._codes[last]
        return self

    def _codes_of(self, rows: pa.Table) -> np.ndarray:
        """The Dims code of each row (columns 1-4), vectorised: each column dictionary-encoded
        on its own, the four indexes (null: 0, a value: its index + 1) made one integer in
        mixed radix, and each distinct integer made a Dims once."""
        encoded = [pc.dictionary_encode(pc.cast(rows.column(i), pa.string())).combine_chunks()
                   for i in range(1, 5)]
        dictionaries = [e.dictionary.to_pylist() for e in encoded]
        if math.prod(len(values) + 1 for values in dictionaries) >= COMBINE_LIMIT:
            # More distinct values than an int64 can combine (never seen): row by row.
            return np.array([self._code(tuple(row.values())[1:])
                             for row in rows.to_pylist()], np.uint32)
        combined = np.zeros(rows.num_rows, np.int64)
        for e, values in zip(encoded, dictionaries, strict=True):
            index = pc.fill_null(pc.add(e.indices.cast(pa.int64()), 1), 0).to_numpy()
            combined = combined * (len(values) + 1) + index
        distinct, inverse = np.unique(combined, return_inverse=True)
        codes = []
        for value in distinct.tolist():
            fields: list[str | None] = []
            for values in reversed(dictionaries):
                value, index = divmod(value, len(values) + 1)
                fields.append(values[index - 1] if index else None)
            codes.append(self._code((fields[3], fields[2], fields[1], fields[0])))
        return np.array(codes, np.uint32)[inverse.reshape(-1)]

    def _code(self, dims: Dims) -> int:
        code = self._code_of.get(dims)
        if code is None:
            code = self._code_of[dims] = len(self._dims)
            self._dims.append(dims)
        return code

    def _shared(self, dims: Dims) -> Dims:
        return self._dims[self._code(dims)]

    def __len__(self) -> int:
        merged = len(self._keys)
        fresh = sum(1 for p in self._recent if not self._in_arrays(p))
        return merged + fresh + len(self._other)

    def _in_arrays(self, phone: str) -> bool:
        key = int(phone[1:])
        i = int(np.searchsorted(self._keys, key))
        return i < len(self._keys) and int(self._keys[i]) == key

    def get(self, phone: str, default: Dims | None = None) -> Dims | None:
        found = self.get_many([phone])[0]
        return default if found is None else found

    def __contains__(self, phone: object) -> bool:
        return isinstance(phone, str) and self.get(phone) is not None

    def get_many(self, phones: list[str]) -> list[Dims | None]:
        """Each phone's Dims, None where it is not known."""
        out: list[Dims | None] = [None] * len(phones)
        wanted: list[int] = []      # positions in phones to look up in the arrays
        keys: list[int] = []
        for i, phone in enumerate(phones):
            dims = self._recent.get(phone)
            if dims is None:
                dims = self._other.get(phone)
            if dims is not None:
                out[i] = dims
            elif len(self._keys) and isinstance(phone, str) and E164.fullmatch(phone):
                wanted.append(i)
                keys.append(int(phone[1:]))
        if wanted:
            asked = np.array(keys, np.int64)
            at = np.searchsorted(self._keys, asked)
            inside = at < len(self._keys)
            found = np.zeros(len(asked), bool)
            found[inside] = self._keys[at[inside]] == asked[inside]
            for i, hit, pos in zip(wanted, found.tolist(), at.tolist(), strict=True):
                if hit:
                    out[i] = self._dims[int(self._codes[pos])]
        return out

    def missing(self, phones: list[str]) -> list[str]:
        """The phones not known, in their order."""
        return [p for p, d in zip(phones, self.get_many(phones), strict=True) if d is None]

    def update(self, described: Mapping[str, Dims]) -> None:
        for phone, dims in described.items():
            shared = self._shared(dims)
            if E164.fullmatch(phone):
                self._recent[phone] = shared
            else:
                self._other[phone] = shared
        if len(self._recent) >= MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        """The recent numbers into the sorted arrays: a known one's code replaced, a new one
        inserted in its place (one pass over the arrays per MERGE_AT numbers)."""
        keys = np.array([int(p[1:]) for p in self._recent], np.int64)
        codes = np.array([self._code(d) for d in self._recent.values()], np.uint32)
        order = np.argsort(keys, kind="stable")
        keys, codes = keys[order], codes[order]
        at = np.searchsorted(self._keys, keys)
        inside = at < len(self._keys)
        known = np.zeros(len(keys), bool)
        known[inside] = self._keys[at[inside]] == keys[inside]
        merged_codes = self._codes.copy()
        merged_codes[at[known]] = codes[known]
        # Both arrays built before either is replaced: a failure leaves the map as it was.
        merged_keys = np.insert(self._keys, at[~known], keys[~known])
        merged_codes = np.insert(merged_codes, at[~known], codes[~known])
        self._keys, self._codes = merged_keys, merged_codes
        self._recent = {}

    def items(self) -> Iterator[tuple[str, Dims]]:
        """Every number and its Dims (tests; not in the order described)."""
        recent = dict(self._recent)
        for key, code in zip(self._keys.tolist(), self._codes.tolist(), strict=True):
            phone = f"+{key}"
            yield phone, recent.pop(phone, self._dims[code])
        yield from recent.items()
        yield from self._other.items()
