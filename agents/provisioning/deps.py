"""Request helpers: the fiware-service headers, JSON bodies, query parameters."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from agents.provisioning.errors import MissingHeaders, WrongSyntax

HEADERS = ("fiware-service", "fiware-servicepath")


def scope(request: Request) -> tuple[str, str]:
    """(service, service path) from the mandatory headers, as iotagent-node-lib requires them."""
    missing = [h for h in HEADERS if h not in request.headers]
    if missing:
        raise MissingHeaders(missing)
    return request.headers["fiware-service"], request.headers["fiware-servicepath"]


def query(request: Request, *names: str) -> list[str]:
    missing = [n for n in names if n not in request.query_params]
    if missing:
        raise MissingHeaders(missing)
    return [request.query_params[n] for n in names]


def page(request: Request) -> tuple[int | None, int]:
    try:
        limit = int(request.query_params["limit"]) if "limit" in request.query_params else None
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise WrongSyntax("limit and offset must be integers") from None
    if (limit is not None and limit < 0) or offset < 0:
        raise WrongSyntax("limit and offset must not be negative")
    return limit, offset


async def body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WrongSyntax("the body is not JSON") from None
