"""Offset paging shared by the calls API and the calls page: neighbour offsets and links.

Links keep every other query parameter (the filters) and change only `offset`, so
following them pages through the same filtered list.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import URL

#: Calls per page of the API and the dashboard, unless a `limit` says otherwise.
DEFAULT_PAGE_SIZE = 50
#: The largest `limit` either accepts.
MAX_PAGE_SIZE = 500
#: The largest `offset` either accepts: far beyond any archive, and within a database integer.
MAX_OFFSET = 10**9


@dataclass(frozen=True)
class PageOffsets:
    """Where the pages next to one start; None where there is none."""

    next: int | None  # older calls (the lists are newest first)
    previous: int | None  # newer calls


def page_offsets(offset: int, limit: int, total: int) -> PageOffsets:
    """The offsets of the pages after and before the page at `offset` of `limit` items."""
    following = offset + limit if offset + limit < total else None
    if offset == 0:
        previous = None
    elif offset >= total:
        # Past the end (e.g. calls were deleted meanwhile): back to the last page that has any.
        previous = ((total - 1) // limit) * limit if total else 0
    else:
        previous = max(0, offset - limit)
    return PageOffsets(next=following, previous=previous)


def link_with_offset(url: URL, offset: int | None) -> str | None:
    """`url` as a path and query with `offset` set (dropped at 0); None for no page."""
    if offset is None:
        return None
    target = url.remove_query_params("offset")
    if offset:
        target = target.include_query_params(offset=offset)
    return target.path + (f"?{target.query}" if target.query else "")
