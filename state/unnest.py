"""PostgreSQL: many rows as one statement with one array parameter per column.

`INSERT ... SELECT ... FROM unnest(:c1::type[], :c2::type[], ...)` sends a batch's rows in
one statement whose text and parameter count do not depend on how many rows there are.
psycopg sends an executemany as a pipeline of one statement per row, with per-row work
in Python, and converts (and never caches) any statement of more than 50 parameters,
such as a multi-row VALUES list; the unnest form is one execute of a statement that
psycopg caches and, once used a few times, prepares (issue 12: about half the worker's
CPU of a 25-row insert). SQLite keeps the executemany, which sqlite3 runs in C.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.selectable import Select

__all__ = ["distinct_keys", "unnest_params", "unnest_rows"]


def unnest_rows(table: Table, columns: Sequence[str], name: str = "v") -> Select[Any]:
    """SELECT v.c1, v.c2, ... FROM unnest(:u_c1, :u_c2, ...) AS v(c1, c2, ...), each
    parameter an array of the column's type (rendered with its cast)."""
    values = func.unnest(*(bindparam(f"u_{c}", type_=ARRAY(table.c[c].type))
                           for c in columns)).table_valued(*columns).render_derived(name=name)
    return select(*(values.c[c] for c in columns))


def unnest_params(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
                  ) -> dict[str, list[Any]]:
    """The arrays of unnest_rows for `rows` (dicts holding every one of `columns`)."""
    return {f"u_{c}": [row[c] for row in rows] for c in columns}


def distinct_keys(rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> bool:
    """Whether no two rows share `key`: an upsert of one statement may touch a row only
    once (PostgreSQL refuses a second change of a row in one ON CONFLICT DO UPDATE)."""
    return len({tuple(row[k] for k in key) for row in rows}) == len(rows)
