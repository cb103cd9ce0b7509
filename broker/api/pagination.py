"""Pointers to the previous and next pages of a query (clauses 5.5.9.1 and 6.3.10): the HTTP Link header.

    Link: </ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json",
          </ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"

The targets are relative URIs that repeat the request with another offset
(clause 6.3.10: limit and offset, every other parameter kept); "type" is the
media type of the response. There is no "prev" on the first page and no
"next" on the last.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from broker.service.queries import Page


def page_links(request: Request, page: Page, total: int, media: str) -> str | None:
    """The Link value pointing to the neighbouring pages, or None when everything fits one page."""
    if page.limit <= 0:
        return None
    path = request.url.path.rstrip("/") or "/"
    others = [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "offset")]

    def target(offset: int, rel: str) -> str:
        query = urlencode([("limit", str(page.limit)), ("offset", str(offset)), *others])
        return f'<{path}?{query}>;rel="{rel}";type="{media}"'

    links = []
    if page.offset > 0:
        links.append(target(max(0, page.offset - page.limit), "prev"))
    if page.offset + page.limit < total:
        links.append(target(page.offset + page.limit, "next"))
    return ",".join(links) or None


def add_links(response: Response, value: str | None) -> Response:
    """Add pagination links to a response, beside a JSON-LD context Link it may already carry."""
    if value:
        existing = response.headers.get("link")
        response.headers["Link"] = f"{existing},{value}" if existing else value
    return response
