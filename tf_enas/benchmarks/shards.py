"""Benchmark jobs split into independent shards, and their JSON rows merged back.

A shard "i/n" (0 ≤ i < n) runs jobs i, i + n, i + 2n, ... of the full, ordered job list;
``merge`` joins the rows of every shard into the rows of the unsharded run: sorted by
their key fields, each key once (a key repeated with other numbers is an error).
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

TIMINGS = ("seconds", "overhead_ms")  # differ between runs; not compared by merge


def parse_shard(spec: str | None) -> tuple[int, int]:
    """"i/n" → (i, n); None or "" → (0, 1) (everything)."""
    if not spec:
        return 0, 1
    i, sep, n = str(spec).partition("/")
    if not (sep and i.strip().isdigit() and n.strip().isdigit()) or not 0 <= int(i) < int(n):
        raise ValueError(f"a shard is 'i/n' with 0 <= i < n (e.g. 0/4), got {spec!r}")
    return int(i), int(n)


def select(jobs: Sequence, shard: str | None) -> list:
    """The jobs of `shard` ("i/n"), in order."""
    i, n = parse_shard(shard)
    return list(jobs)[i::n]


def _same(a: dict, b: dict) -> bool:
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMINGS}
    return strip(a) == strip(b)


def merge(row_lists: Iterable[Sequence[dict]], key: Sequence[str]) -> list[dict]:
    """Rows of several shards → one list, sorted by `key` fields, one row per key."""
    out = {}
    for rows in row_lists:
        for r in rows:
            missing = [k for k in key if k not in r]
            if missing:
                raise ValueError(f"a row lacks the key fields {missing}: {sorted(r)}")
            k = tuple(r[f] for f in key)
            if k in out and not _same(out[k], r):
                raise ValueError(f"two shards disagree on the row {dict(zip(key, k))}")
            out.setdefault(k, r)
    return [out[k] for k in sorted(out)]


def load_rows(paths: Sequence[str], section: str) -> list[list[dict]]:
    """The `section`'s rows of each benchmark JSON file (tf-enas-benchmark --json_out)."""
    lists = []
    for p in paths:
        try:
            with open(p) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read benchmark JSON {p!r}: {e}") from e
        rows = (data.get(section) or {}).get("rows") if isinstance(data, dict) else None
        if rows is None:
            raise ValueError(f"{p!r} has no {section!r} rows")
        lists.append(rows)
    return lists
