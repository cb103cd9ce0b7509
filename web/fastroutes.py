"""`FastRoutes`: the hottest routes of a FastAPI app dispatched straight to their handlers (issue 16).

FastAPI reaches a handler through its router (every route tried in turn, included routers
and their effective contexts), the dependency solver (each parameter looked up and
validated by pydantic) and two exit stacks; for a GET of one entity that was about a fifth
of the broker's CPU. This middleware, the innermost of the app's own, takes a short list
of routes whose handlers need nothing the solver gives beyond plain values: path
parameters (str), header parameters with an alias and a string default, and the
`Request`. A request matching one of them (path and method) is served by calling the
handler with those values, under the same exception handlers as the app's
(`starlette.exception_handlers`, read from the ExceptionMiddleware it wraps) and with the
scope the router would have left (`route`, `endpoint`, `path_params`, `router`), so the
HTTP metrics label and every response byte stay those of the normal route (the handlers are
wrapped only when the handler raises: the exception is then answered through the same two
levels of wrappers as the router's path, and a response that returned sends as it would). Anything else
(another path or method, a route taking more than that) goes the normal way.

A `Mount` may be listed too: a request under it is handed to the mounted app without
trying the routes before it.

Routes are listed by the app that owns them, in the order its router tries them; a fast
route must not be shadowed by an earlier route of the app (tests/broker/test_fast_routes.py
compares every case with the normal route over a real socket).

Two private helpers of Starlette (`wrap_app_handling_exceptions`, `get_route_path`) are
used so that errors and paths are handled exactly as its router handles them; Starlette
is pinned in constraints.txt, and that test fails if either changes behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.convertors import Convertor
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from web.request_limits import BODY

__all__ = ["FastRoute", "FastRoutes", "plan"]


@dataclass(frozen=True, slots=True)
class FastRoute:
    """One route served directly: its compiled path, methods and how its handler's arguments are found."""

    route: APIRoute | Mount
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    methods: frozenset[str]
    call: Callable[..., Any]
    request_name: str | None
    headers: tuple[tuple[str, bytes, str], ...]  # (argument, lower-case header name, default)


def plan(route: APIRoute | Mount, prefix: str = "") -> FastRoute:
    """How to serve `route` (included under `prefix`) directly; ValueError when its handler needs the solver."""
    if isinstance(route, Mount):
        return FastRoute(route, route.path_regex, route.param_convertors, frozenset(), route.handle, None, ())
    dependant = route.dependant
    if (dependant.query_params or dependant.cookie_params or dependant.body_params or dependant.dependencies
            or dependant.websocket_param_name or dependant.http_connection_param_name
            or dependant.response_param_name or dependant.background_tasks_param_name
            or dependant.security_scopes_param_name or route.dependencies):
        raise ValueError(f"{route.path}: its handler takes more than path, header and Request parameters")
    headers = []
    for field in dependant.header_params:
        alias = field.field_info.alias
        default = field.field_info.default
        if field.field_info.annotation is not str or not alias or not isinstance(default, str):
            raise ValueError(f"{route.path}: header parameter {field.name} is not an aliased str with a default")
        headers.append((field.name, alias.lower().encode("latin-1"), default))
    for field in dependant.path_params:
        if field.field_info.annotation is not str:
            raise ValueError(f"{route.path}: path parameter {field.name} is not a str")
    regex, _, convertors = compile_path(prefix + route.path)
    if set(convertors) != {f.name for f in dependant.path_params}:
        raise ValueError(f"{route.path}: its path parameters are not its handler's")
    assert dependant.call is not None
    return FastRoute(route, regex, convertors, frozenset(route.methods or ()), dependant.call,
                     dependant.request_param_name, tuple(headers))


class FastRoutes:
    """Serves the listed routes without FastAPI's router and dependency solver (see the module docstring).

    `routes` is called when the middleware stack is built (the app's first request), so it may name
    routes added after the middleware. Innermost: it must wrap the app's ExceptionMiddleware, whose
    handlers it uses; otherwise it passes every request on. (No `routes` attribute: web.resources looks
    for the first app down the chain that has one, the router.)
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Sequence[FastRoute]], router: Any = None) -> None:
        self.app = app
        self.router = router
        self.fast: tuple[FastRoute, ...] = tuple(routes()) if isinstance(app, ExceptionMiddleware) else ()
        self.handlers = (app._exception_handlers, app._status_handlers) if isinstance(app, ExceptionMiddleware) \
            else ({}, {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast:
            path = get_route_path(scope)
            for fast in self.fast:
                match = fast.regex.match(path)
                if match is None:
                    continue
                if fast.methods and scope["method"] not in fast.methods:
                    continue  # the router would try the routes after it, then answer 405
                await self._serve(fast, match, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, fast: FastRoute, match: re.Match[str], scope: Scope, receive: Receive,
                     send: Send) -> None:
        params = dict(scope.get("path_params", {}))
        values = {key: fast.convertors[key].convert(value) for key, value in match.groupdict().items()}
        scope["starlette.exception_handlers"] = self.handlers  # as ExceptionMiddleware does
        if "router" not in scope and self.router is not None:
            scope["router"] = self.router
        if isinstance(fast.route, Mount):
            child = fast.route.matches(scope)[1]  # root_path, app_root_path, path_params: as the router sets them
            scope.update(child)
            outer = Request(scope, receive, send)
            await wrap_app_handling_exceptions(fast.route.handle, outer)(scope, receive, send)
            return
        params.update(values)
        scope["endpoint"] = fast.call
        scope["path_params"] = params
        scope["route"] = fast.route
        request = Request(scope, receive, send)
        body = scope.get(BODY)
        if body is not None:
            # RequestLimits read the whole body: Request.body() answers from Starlette's own cache of it
            # instead of receiving it again through an async generator (5 % of a PATCH's handler
            # thread in-process; issue 16, patch17). Sound while no middleware between the two
            # rewrites the body (none does: ResourcePaths, and FastRoutes is innermost).
            request._body = body
        kwargs: dict[str, Any] = dict(params)
        if fast.request_name is not None:
            kwargs[fast.request_name] = request
        for name, header, default in fast.headers:
            kwargs[name] = default
            for key, value in scope["headers"]:
                if key == header:
                    kwargs[name] = value.decode("latin-1")
                    break

        try:
            response = await fast.call(**kwargs)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handlers, as on the router's path
            failure = exc

            async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
                raise failure

            # two levels, as ExceptionMiddleware around request_response: a handler's own failure meets the outer one
            inner = wrap_app_handling_exceptions(endpoint, request)
            await wrap_app_handling_exceptions(inner, request)(scope, receive, send)
            return
        # a Response sends its head first: nothing it raises could still be answered by a handler
        await response(scope, receive, send)
