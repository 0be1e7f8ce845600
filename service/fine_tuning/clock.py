"""The database's clock, in whole Unix seconds, for lease comparisons.

Leases are compared on the database's clock, never on a worker's, so that a worker whose clock
runs behind cannot believe it still holds a lease that every other process sees as lapsed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class db_now(FunctionElement[int]):
    """`now()` as Unix seconds, evaluated by the database when the statement runs."""

    type = BigInteger()
    inherit_cache = True


@compiles(db_now)
def _postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    # clock_timestamp(), not now(): now() is the transaction's start, which may be seconds old.
    return "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "CAST(strftime('%s', 'now') AS INTEGER)"
