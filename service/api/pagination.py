"""Cursor pages as OpenAI's lists: `limit`, `after=<id of the last item seen>`, `has_more`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import NotFoundError

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    has_more: bool


async def cursor_page(
    session: AsyncSession,
    query: Select[Any],
    model: Any,
    *,
    limit: int,
    order: str = "desc",
    after: str | None,
) -> Page[Any]:
    """Rows of `query` ordered by insertion (`model.seq`), strictly after the row whose id is `after`.

    `query` carries the tenant filter, so a cursor from another organisation is simply unknown.
    """
    descending = order == "desc"
    if after:
        cursor = await session.scalar(query.with_only_columns(model.seq).where(model.id == after))
        if cursor is None:
            # Unknown, expired or another tenant's id: there is nothing to page after.
            raise NotFoundError(f"No such object: {after} (given as the `after` cursor)", param="after")
        query = query.where(model.seq < cursor if descending else model.seq > cursor)
    query = query.order_by(model.seq.desc() if descending else model.seq.asc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    return Page(items=rows[:limit], has_more=len(rows) > limit)
